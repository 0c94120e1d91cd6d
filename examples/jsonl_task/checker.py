"""A checker for problems.jsonl, named in the policy as ``checker.py``'s ``score`` (``"checker": "checker:score"``,
with this folder on PYTHONPATH). It gets the record and the label, and returns a score and a reason."""

import re


def score(record: dict, answer: str) -> tuple[float, str]:
    numbers = [int(n) for n in re.findall(r"\d+", record["question"])]
    operator = "+" if "+" in record["question"] else "-"
    expected = numbers[0] + numbers[1] if operator == "+" else numbers[0] - numbers[1]
    if not answer.lstrip("-").isdigit():
        return 0.0, f"{answer!r} is not a whole number"
    return float(int(answer) == expected), f"{answer} {'is' if int(answer) == expected else 'is not'} {expected}"
