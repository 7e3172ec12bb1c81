"""Reading weight files into {name: NumPy array} without unpickling arbitrary objects.

  .npz                      NumPy archives (allow_pickle=False)
  .safetensors              Hugging Face safetensors (the `eval` extra installs the reader)
  .pt / .pth / .bin         PyTorch files: torch.save state dicts and torch.jit.save (TorchScript)
                            modules are read without torch by jaxmoda.eval.torchfile (an allow-listed
                            unpickler); only the legacy pre-1.6 format needs torch, through
                            torch.load(weights_only=True), imported only then

A truncated, tampered or foreign file is one clear error naming the file.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np

from jaxmoda.errors import CheckpointError


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist; pass the path of a downloaded weights file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: np.asarray(z[k]) for k in z.files}
        if ext == ".safetensors":
            try:
                from safetensors.numpy import load_file
            except ImportError:
                raise CheckpointError(f"reading {path} needs safetensors: pip install 'jaxmoda[eval]'") from None
            return dict(load_file(path))
        if ext in (".pt", ".pth", ".bin"):
            from jaxmoda.eval import torchfile
            if zipfile.is_zipfile(path):
                return torchfile.load(path)
            with open(path, "rb") as f:
                if f.read(2) == b"PK":
                    raise zipfile.BadZipFile("a zip archive with no central directory: truncated")
            try:
                import torch
            except ImportError:
                raise CheckpointError(f"{path} is not a zip archive: a legacy (pre-1.6) torch file, or damaged. "
                                      "Reading the legacy format needs PyTorch (pip install torch); or convert "
                                      "it to .npz or .safetensors elsewhere") from None
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"weights file {path} could not be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160] if str(e) else 'truncated or damaged'}); "
                              "download it again or check its checksum") from None
    raise CheckpointError(f"weights file {path}: unknown format {ext or '(no extension)'}; use .npz, .safetensors, "
                          ".pt, .pth or .bin")
