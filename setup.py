"""Install recbole_rimirec; the repository's properties/ folder ships inside the package."""

from setuptools import setup

setup(
    name="recbole-rimirec",
    version="0.1.0",
    description="RimiRec and the multi-interest baselines MIND, ComiRec-DR, ComiRec-SA as a RecBole 1.2.x plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=[
        "recbole_rimirec",
        "recbole_rimirec.data",
        "recbole_rimirec.model",
        "recbole_rimirec.tree",
        "recbole_rimirec.retrieval",
        "recbole_rimirec.properties",
    ],
    package_dir={"recbole_rimirec.properties": "properties"},
    package_data={"recbole_rimirec.properties": ["*.yaml", "model/*.yaml", "dataset/*.yaml"]},
    install_requires=[
        "recbole>=1.2.1,<1.3",
        "torch>=2.0",
        "numpy>=1.24",
        "pandas>=1.3,<3",
        "scipy",
        "faiss-cpu>=1.7.4",
        "scikit-learn",
        "pyyaml",
        "tqdm",
    ],
    entry_points={"console_scripts": ["recbole-rimirec = recbole_rimirec.cli:main"]},
    extras_require={"test": ["pytest>=7", "hypothesis>=6"], "dev": ["black", "ruff"]},
)
