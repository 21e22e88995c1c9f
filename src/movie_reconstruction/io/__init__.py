"""Readers and writers. Each module reads one kind of input; none of them writes to its input."""
