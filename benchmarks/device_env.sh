# Sourced by the one-call device scripts (gpu_check.sh, gpu_speed.sh) from the repository root: installs the carried
# wheels (.whl/, from prepare_gpu_check.sh) into /tmp/site and puts them and the repository on PYTHONPATH.
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
