"""Fuzzing harnesses for vncd's parsers and protocol cores.

:mod:`tests.fuzz.harnesses` defines one harness per attack surface (what
input it takes, which exceptions are the project's own "this input is
bad" answers); :mod:`tests.fuzz.mutate` is a small seeded mutator for the
deterministic runs in the trial suite (:mod:`tests.fuzz.test_fuzz`);
:mod:`tests.fuzz.run` fuzzes by hand with atheris and coverage;
:mod:`tests.fuzz.make_corpus` regenerates the seed corpus under
``tests/fuzz/corpus/<harness>/``.
"""
