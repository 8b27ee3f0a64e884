"""Image-to-image translation (CycleGAN, Zhu et al. 2017): two domains A and B, generators
G: A -> B and F: B -> A, a discriminator per domain, and a cycle-consistency loss.

Read in this order: `models` (networks, shapes in comments), `pairs` (the two datasets),
`train` (the CycleGAN step and loop, on the engine's callbacks and checkpoint files),
`translate` (what is served: export, load, translate at any size) and `quality`.
"""
