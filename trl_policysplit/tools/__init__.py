"""Tools around the library: the training command (`cli`), held-out evaluation, plots, the built-in SmolLM2 model and
arithmetic task, and the studies (`tools.studies`: benchmarks, testbed, learning study). The library
(`trl_policysplit`'s trainers, configs, modes and functional core) imports none of them."""
