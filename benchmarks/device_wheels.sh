# Sourced by the device scripts (gpu_check.sh, gpu_isoflop.sh): install the carried wheels
# (.whl/, built by `bash benchmarks/gpu_check.sh --wheels`) whose package the GPU machine
# lacks, into $SITE (first on PYTHONPATH), with $PY. Skipping what the machine has matters:
# two versions of one package clash.
install_missing_wheels() {
  local whl dist missing=()
  for whl in .whl/*.whl; do
    [ -e "$whl" ] || continue
    dist=$(basename "$whl") && dist=${dist%%-*}
    "$PY" -c "import importlib.metadata as m, sys; m.distribution(sys.argv[1])" "$dist" \
      2>/dev/null || missing+=("$whl")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]##*/}"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "${missing[@]}" || return 1
  fi
}
