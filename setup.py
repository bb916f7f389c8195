"""Install: pip install -e .  (tests: pip install -e '.[test]')."""
import setuptools

setuptools.setup(
    name='research',
    version='0.1.0',
    description=('JAX/Flax codebase for studying how architecture, objective and '
                 'scale shape what a language model learns.'),
    packages=setuptools.find_packages(include=['research', 'research.*'])
    + ['research.gin_configs'],
    # The configs travel with the package (research/gin_configs once installed), so that
    # `--gin_file=gin_configs/runs/tiny.gin` and sweeps' run configs resolve without a
    # checkout (research/gin_files.py).
    package_dir={'research.gin_configs': 'gin_configs'},
    package_data={'research.gin_configs': ['*/*.gin']},
    entry_points={
        'console_scripts': [
            'research-train = research.train.main:run',
            'research-sweep = research.sweeps.main:run',
            'research-fit = research.scaling.main:run',
            'research-generate = research.decoding.main:run',
            'research-probe = research.emergence.main:run',
            'research-lmeval = research.evaluation.main:run',
            'research-clean = research.data.cleaning.main:run',
        ],
    },
    python_requires='>=3.10',
    install_requires=[
        'jax>=0.4.35,<0.13',
        'flax>=0.10,<0.13',
        'optax>=0.2.3,<0.3',
        'orbax-checkpoint>=0.10,<0.13',
        'absl-py>=2.0,<3',
        'gin-config>=0.5,<0.6',
        'numpy>=1.26,<3',
        'scipy>=1.11,<2',
        'pandas>=2.0,<4',
        'matplotlib>=3.8,<4',
        'tensorboardX>=2.6,<3',
        # Data (research/data): TFDS builders need TensorFlow; array_record gives random
        # access; tfds 4.9 imports importlib_resources without declaring it.
        'tensorflow-cpu>=2.16,<2.22',
        'tensorflow-datasets>=4.9.6,<5',
        'array-record>=0.5,<0.9',
        'importlib_resources>=6,<7',
        'sentencepiece>=0.2,<0.3',
        # Near deduplication (research/data/cleaning): MinHash and LSH.
        'datasketch>=2.0,<3',
        # Sweeps: the slurm executor (and its local twin in tests).
        'submitit>=1.5,<2',
        # Scaling fits: single-threaded BLAS for scipy's tiny L-BFGS problems.
        'threadpoolctl>=3,<4',
    ],
    extras_require={
        # torch is pinned exactly: 2.13.0 is the CPU wheel on every machine's
        # disk; any other spec pulls a multi-GB CUDA build.
        'test': [
            'pytest>=8,<10',
            'torch==2.13.0',
            'transformers>=4.45,<6',
            # tests/adapt/test_peft_hf.py: LoRA parity with Hugging Face peft.
            'peft>=0.13,<1',
            # research/evaluation/harness.py: the `research` model type of
            # lm-evaluation-harness, and its own `hf` model (which needs accelerate) that
            # the parity test compares against.
            'lm-eval>=0.4.5,<0.5',
            'accelerate>=1.0,<2',
            # The notebooks are executed on small fixtures.
            'nbformat>=5.9,<6',
            'nbclient>=0.10,<0.12',
            'ipykernel>=6.29,<8',
        ],
    },
)
