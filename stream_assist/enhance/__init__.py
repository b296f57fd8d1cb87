"""Enhancement: the Numba kernels (LAB boost, adaptive tone curve, HDR simulation), their float64 definition and
the OpenCV way of doing the same work. Hands the enhanced RGB frame on to the frame slot."""
