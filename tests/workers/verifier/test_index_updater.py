"""Keeping the accepted-samples index current from candidates and verdicts, and rebuilding indexes as a job."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from sqlmodel import Session

from tasks import get_family
from schemas.messages import Candidate, Verdict, sample_id_for
from schemas.tables import Sample
from services.settings import Settings
from workers.verifier.index_updater import AcceptedIndexer, IndexUpdater, rebuild
from workers.verifier.memory import Memory, index_name

ACCEPTED = index_name("accepted", "grounded")


class WordHashEmbedder:
    """A deterministic stand-in for the sentence model (a bag of hashed words): these tests are about bookkeeping."""

    name, dim = "word-hash", 64

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def candidate(question: str) -> Candidate:
    return Candidate(sample_id=sample_id_for("grounded", question), family="grounded", difficulty=1,
                     problem=question, answers=[" Tesa."])


def verdict(c: Candidate, accepted: bool) -> Verdict:
    return Verdict(sample_id=c.sample_id, family=c.family, accepted=accepted, label=" Tesa" if accepted else None)


@pytest.fixture
def memory(tmp_path):
    memory = Memory(tmp_path / "indexes", WordHashEmbedder())
    yield memory
    memory.close()


def test_accepted_samples_enter_the_index_whichever_half_comes_first(memory):
    indexer = AcceptedIndexer(memory)
    first, second, rejected = candidate("where does Kavo live"), candidate("how old is Mira"), candidate("who is Zed")
    indexer.apply([first, verdict(first, True)])  # candidate, then verdict
    indexer.apply([verdict(second, True)])  # verdict first: waits for the text
    assert memory.index(ACCEPTED).ids() == [first.sample_id] and len(indexer.pending) == 1
    indexer.apply([second, rejected, verdict(rejected, False)])

    assert sorted(memory.index(ACCEPTED).ids()) == sorted([first.sample_id, second.sample_id])
    assert len(indexer.pending) == 0  # every sample completed
    hit = memory.search(ACCEPTED, ["where does Kavo live"], 1)[0][0]
    assert (hit.id, hit.text, hit.meta) == (first.sample_id, "where does Kavo live", {"label": " Tesa"})

    # Re-delivered batches change nothing; a verdict that flips to rejected takes the sample out.
    indexer.apply([first, verdict(first, True), second, verdict(second, True)])
    assert indexer.added == 2 and len(memory.index(ACCEPTED)) == 2
    indexer.apply([verdict(second, False)])
    assert memory.index(ACCEPTED).ids() == [first.sample_id] and indexer.removed == 1
    indexer.close()


def test_rebuild_reads_the_accepted_samples_from_the_store(memory, tmp_path):
    from services.store.db import open_store

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'store.sqlite'}")
    engine = open_store(url=settings.store_url)
    rows = [("where does Kavo live", "grounded", "accepted"), ("how old is Mira", "grounded", "accepted"),
            ("who is Zed", "grounded", "rejected"), ("1+2", "arithmetic", "accepted")]
    with Session(engine) as session:
        for problem, family, status in rows:
            session.add(Sample(id=sample_id_for(family, problem), family=family, problem=problem, status=status,
                               label="x"))
        session.commit()
    engine.dispose()
    memory.add(ACCEPTED, ["stale"], ["a sample the store no longer has"])

    progress = []
    result = rebuild(memory, ACCEPTED, settings, lambda fraction, message: progress.append(fraction))
    expected = sorted(sample_id_for("grounded", p) for p, f, s in rows[:2])
    assert sorted(memory.index(ACCEPTED).ids()) == expected
    assert result["items"] == 2 and result["removed"] == 1 and result["kind"] == "exact" and result["generation"] >= 1
    assert progress == sorted(progress) and progress[-1] < 1.0

    family = get_family("grounded")
    result = rebuild(memory, index_name("corpus", "grounded"), settings)
    assert result["items"] == len(family.corpus())
    result = rebuild(memory, index_name("eval", "grounded"), settings)
    assert result["items"] == len({p.sample_id for d in family.difficulties for p in family.eval_suite(d)})
    with pytest.raises(ValueError, match="accepted-<family>"):
        rebuild(memory, "nonsense", settings)


def test_the_rebuild_job_runs_on_the_default_queue():
    from services.jobs import JOBS, queue_for
    from services.jobs.app import discover_job_modules

    assert JOBS["rebuild_index"].queue == queue_for("rebuild_index") == "default"
    assert "workers.verifier.jobs" in discover_job_modules()  # every jobs worker imports it


@pytest.mark.kafka
def test_the_updater_keeps_the_index_current_from_the_topics(settings, tmp_path):
    from services.bus import EventProducer, create_topics

    create_topics(settings)
    samples = [candidate(q) for q in ("where does Kavo live", "how old is Mira", "who is Zed")]
    with EventProducer(settings) as producer:
        for c, accepted in zip(samples, (True, True, False)):
            producer.publish(verdict(c, accepted))  # verdicts before candidates, across topics
        for c in samples:
            producer.publish(c)
    memory = Memory(tmp_path / "indexes", WordHashEmbedder())
    updater = IndexUpdater(settings, memory=memory, group_id=f"{settings.topic_prefix}updater")
    updater.run(max_events=6, idle_timeout_s=30)

    assert updater.dead_lettered == 0
    assert sorted(memory.index(ACCEPTED).ids()) == sorted(c.sample_id for c in samples[:2])
    memory.close()
