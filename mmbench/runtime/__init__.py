"""Where and how a run computes: device choice, torch.distributed set-up, seeding of every random source.
Imports nothing else of mmbench, so every floor above may use it.
"""
