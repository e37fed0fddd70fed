"""Student and teacher factories, and the checkpoint format (safetensors + a JSON card)."""
