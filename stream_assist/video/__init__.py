"""Video in: frames from the aiortc track, completed on their RTP marker, sampled on a grid of due times, converted
to RGB at the model's size, and gated by how much the scene changed. Hands RGB frames on to enhancement."""
