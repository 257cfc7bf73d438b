"""Data groups: procedural generators, file/hub loaders, prompt templates, curriculum, difficulty filter."""
