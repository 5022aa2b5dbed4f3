# Step timings for scripts/test.sh and .ci/run (sourced): `step NAME CMD...` runs CMD and
# records how long it took; the outermost script prints every step's seconds at its end, failed
# or not, so each run shows where its time went.
if [ -z "${CLOUDFN_STEPS:-}" ]; then
  CLOUDFN_STEPS=$(mktemp)
  export CLOUDFN_STEPS
  CLOUDFN_STEPS_START=$SECONDS
  steps_table() {
    local status=$?
    echo
    echo "steps (seconds):"
    awk -F'\t' '{ printf "  %-44s %6d\n", $1, $2; if ($1 !~ /its steps above/) total += $2 } END { printf "  %-44s %6d\n", "(sum of steps)", total }' "$CLOUDFN_STEPS"
    printf "  %-44s %6d\n" "(wall clock)" $((SECONDS - CLOUDFN_STEPS_START))
    rm -f "$CLOUDFN_STEPS"
    return $status
  }
  trap steps_table EXIT
fi
step() {
  local name=$1 t0=$SECONDS status=0
  shift
  "$@" || status=$?
  [ $status = 0 ] || name="$name (FAILED)"
  printf '%s\t%d\n' "$name" $((SECONDS - t0)) >> "$CLOUDFN_STEPS"
  return $status
}
