"""Scripted fake engines for the contract suite: a byte-level "model" that replies from a script file, in both
engine shapes (batch: the runtime schedules it; self: it batches by itself). Served by a real `inferno serve`
through INFERNO_ENGINES, so the runtime's behaviours are checked end to end with exactly known outputs."""
