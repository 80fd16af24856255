#!/usr/bin/env bash
# For a GPU machine without network or without `datasets` / `kornia`: run this on a machine that has them, before
# benchmarks/gpu_check.sh there. It copies CIFAR-10 from $CIFAR10_COPY (default ../shared/datasets/cifar10, a copy laid
# out like the Hub repo) into .data/ and downloads, for Python $WHEEL_PYTHON (default 3.12), the wheels of datasets and
# kornia with the needs a bare PyTorch image lacks into .whl/ (both git-ignored; together about 62 MiB). Copy both
# beside the checkout on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .data .whl
mkdir -p .data .whl
cp -r "${CIFAR10_COPY:-../shared/datasets/cifar10}" .data/cifar10
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0 kornia==0.9.0 kornia_rs==0.2.0
du -sh .data .whl
