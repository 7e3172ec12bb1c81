"""jaxmoda: JAX/Flax reimplementations of D²iT and MoDA for TPU pods and multi-GPU clusters."""

from setuptools import find_packages, setup

CORE = [
    "jax>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "grain>=0.2.18,<0.3",
    "array-record>=0.8",
    "einops>=0.8",
    "ml-collections>=1.1",
    "chex>=0.1.92",
    "numpy>=2.0",
    "pillow>=10",
    "scikit-image>=0.24",   # bundled photographs for the default dataset
    "tqdm>=4.66",
    "matplotlib>=3.8",      # loss plots and figures
    "tensorboardX>=2.6",
    "absl-py>=2.0",
    "flatbuffers>=24",      # jax.export serialisation (python -m jaxmoda.export, jaxmoda.serve)
    "ml-dtypes>=0.4",       # bfloat16 storages of PyTorch weight files (a jax dependency, imported directly)
]

EXTRAS = {
    # TFDS sources (ArrayRecord-prepared datasets through tfds.data_source); no TensorFlow needed.
    "tfds": ["tensorflow-datasets>=4.9.10"],
    # Audio front end for MoDA.
    "audio": ["librosa>=0.11", "soundfile>=0.12", "espeakng-loader>=0.2.4"],
    # Talking-head video: MP4 writing/probing (PyAV ships FFmpeg with libx264 and AAC) and face detection
    # (OpenCV's Haar cascades ship in its wheel; 5.x dropped them).
    "video": ["av>=14", "opencv-python-headless>=4.9,<5"],
    # Evaluation and weight conversion; torch is imported lazily and only here.
    "eval": ["scipy>=1.13", "safetensors>=0.4"],
}
EXTRAS["dev"] = sorted(set(EXTRAS["tfds"] + EXTRAS["audio"] + EXTRAS["video"] + ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "ruff>=0.6"]))

setup(
    name="jaxmoda",
    version="0.1.0",
    description="D²iT and MoDA diffusion systems in JAX/Flax, sharded over device meshes.",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["jaxmoda", "jaxmoda.*"]),
    install_requires=CORE,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
