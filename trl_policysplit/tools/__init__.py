"""Tools around the library: the training command (`cli`), held-out evaluation, plots, the built-in SmolLM2 model and
arithmetic task. The studies (overhead benchmark, testbed, learning study) live in the repository's `benchmarks/`,
outside the wheel. The library (`trl_policysplit`'s trainers, configs, modes and functional core) imports none of
them."""
