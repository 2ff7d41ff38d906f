"""A short deterministic run of every fuzz harness (no atheris needed).

Each test replays the harness's seed corpus and a fixed number of
mutants made with a fixed RNG seed (:mod:`tests.fuzz.mutate`), so every
run sees the same inputs; the only allowed outcomes are normal events
and the harness's expected exceptions.  The counts keep each harness to
a few seconds; coverage-guided fuzzing is done by hand with
``python -m tests.fuzz.run HARNESS --seconds N``.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz.harnesses import HARNESSES
from tests.fuzz.make_corpus import MAX_SEED, SEEDS
from tests.fuzz.run import CORPUS_DIR, corpus, replay

#: Mutants per harness, sized so that each run takes a few seconds
#: (creds_files writes files and loads certificates: ~15 ms an input).
MUTATIONS = {
    "options": 3000, "creds_files": 120, "rfb_server": 800, "vencrypt": 800,
    "websocket": 2000, "decode": 1500, "monitor": 1500,
}
#: Fixed seed of the mutator: the same inputs on every run.
SEED = 8
#: A safety net: a run stops after this many seconds (on a slow machine),
#: having still replayed the corpus and the first mutants in order.
TIME_LIMIT = 20.0


class CorpusTests(SynchronousTestCase):

    def test_every_harness_has_a_small_corpus(self):
        """Each harness has tens of seeds of at most a few KB, and a generator."""
        self.assertEqual(set(HARNESSES), set(MUTATIONS))
        self.assertEqual(set(HARNESSES), set(SEEDS))
        for name in HARNESSES:
            seeds = corpus(name)
            self.assertGreaterEqual(len(seeds), 5, name)
            self.assertLessEqual(len(seeds), 60, name)
            for entry in os.listdir(os.path.join(CORPUS_DIR, name)):
                size = os.path.getsize(os.path.join(CORPUS_DIR, name, entry))
                self.assertLessEqual(size, MAX_SEED, f"{name}/{entry}")


class DeterministicRunTests(SynchronousTestCase):
    """One test per harness: corpus + seeded mutants, no crash."""

    def check(self, name: str) -> None:
        runs, crashes = replay(name, MUTATIONS[name], SEED, time_limit=TIME_LIMIT)
        self.assertGreater(runs, len(corpus(name)), "not even the corpus ran")
        if crashes:
            first = crashes[0]
            self.fail(f"{len(crashes)} of {runs} inputs crashed the {name} harness; first:"
                      f" {first.signature}\ninput: {first.data[:300]!r}\n{first.traceback}")

    def test_options(self):
        """The option parser and legacy translation: OptionError/HelpRequest or a
        translation that parses again."""
        self.check("options")

    def test_creds_files(self):
        """Credential, secret and authz files: ObjectError or a loaded object."""
        self.check("creds_files")

    def test_rfb_server(self):
        """The RFB server core and a served display: protocol errors only, and
        output the project's client can read."""
        self.check("rfb_server")

    def test_vencrypt(self):
        """The VeNCrypt exchange into TLS, both sides: protocol errors only."""
        self.check("vencrypt")

    def test_websocket(self):
        """The WebSocket upgrade and frames: protocol errors only."""
        self.check("websocket")

    def test_decode(self):
        """The client's decoders and state machine: DecodeError/protocol errors only."""
        self.check("decode")

    def test_monitor(self):
        """QMP and HMP: every input answered, nothing escapes."""
        self.check("monitor")
