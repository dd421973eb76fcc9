"""What every run shares: trainer factory, run folders, checkpoints (every epoch, on signals,
with RNG and data position), the non-finite guard, metrics that survive a resume, and encoder
exports written as one verified unit. Submodules are imported where they are used."""
