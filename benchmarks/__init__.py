"""Studies of the trainers, run by `scripts/benchmark.py` from the repository (this folder is not in the wheel): the
overhead benchmark against GRPOTrainer (`overhead`), the CPU exploration testbed (`testbed`) and the real-model
learning study (`learning`)."""
