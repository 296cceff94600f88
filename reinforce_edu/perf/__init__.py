"""Making it fast and measuring it: precision choice, attention kernels and frozen-weight storage,
memory allocation, timers and meters, the matmul roofline. Optional reading for a learner."""
