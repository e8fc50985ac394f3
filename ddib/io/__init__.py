"""Files in and out: images, point files, latents, output planning, atomic writes, charts."""
