"""The engine-agnostic runtime: the engine thread, the sequence lifecycle and the statistics every engine
shares. Engines plug in through the protocols in protocol.py."""
