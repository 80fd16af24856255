#!/usr/bin/env bash
# Run here (not on the device) before benchmarks/gpu_check.sh: copies CIFAR-10 into .data/ (../shared does not
# travel) and downloads, for the device's Python 3.12, the wheels it lacks (datasets and kornia with the needs the
# device image does not have) into .whl/. Both folders are git-ignored; carry them: CIFAR-10's 54 MiB and the
# wheels' 8 MiB fit the 64 MiB allowed.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .data .whl
mkdir -p .data .whl
cp -r ../shared/datasets/cifar10 .data/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0 kornia==0.9.0 kornia_rs==0.2.0
du -sh .data .whl
