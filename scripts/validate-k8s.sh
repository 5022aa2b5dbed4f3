#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes (or DIR) offline, without a cluster:
#   1. every resource against the Kubernetes OpenAPI schemas that the `kubernetes-validate`
#      PyPI package ships, strictly (unknown fields are errors), for each version in
#      K8S_VERSIONS (default "1.30 1.37": the oldest supported and the newest the package knows);
#      a kind it has no schema for is an error too;
#   2. what a schema cannot see: kustomization.yaml lists exactly the other YAML files, and
#      selectors, named ports, ConfigMap/Secret references, $(VAR)s in args, the HPA's target
#      and the shutdown timing (grace period > preStop sleep + CLOUDFN_DRAIN_TIMEOUT) agree;
#   3. `kubectl kustomize` builds the directory, when kubectl is installed.
# Exits non-zero on any failure. The tool lives in a venv, target/k8s-venv (made once, ~20 s;
# then a run takes about a second).
#   scripts/validate-k8s.sh [DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$ROOT/deploy/kubernetes}
VENV=${K8S_VENV:-$ROOT/target/k8s-venv}
VALIDATE_VERSION=1.37.0
K8S_VERSIONS=${K8S_VERSIONS:-1.30 1.37}

[ -d "$DIR" ] || { echo "validate-k8s: no directory $DIR" >&2; exit 2; }
command -v python3 >/dev/null || {
  echo "validate-k8s: python3 is missing (Debian: apt-get install -y python3 python3-venv)" >&2
  exit 2
}

# Debian splits venv's pip bootstrap (ensurepip) into python3-venv.
if [ ! -x "$VENV/bin/python" ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "validate-k8s: installing python3-venv" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "validate-k8s: python3 cannot make a venv; install it: sudo apt-get install -y python3-venv" >&2
    exit 2
  fi
fi

if [ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null)" != "$VALIDATE_VERSION" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$VALIDATE_VERSION"
fi

mapfile -t FILES < <(find "$DIR" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) \
  ! -name 'kustomization.y*ml' | sort)
[ "${#FILES[@]}" -gt 0 ] || { echo "validate-k8s: no manifests in $DIR" >&2; exit 1; }

# 1. Schemas. kubernetes-validate exits 0 with a WARN for a kind it has no schema for (a typo
#    in `kind` or `apiVersion`): count those as failures.
VERSION_ARGS=()
for v in $K8S_VERSIONS; do VERSION_ARGS+=(-k "$v"); done
status=0
out=$("$VENV/bin/kubernetes-validate" --strict --quiet "${VERSION_ARGS[@]}" "${FILES[@]}" 2>&1) || status=1
if [ -n "$out" ]; then
  echo "$out"
  grep -q '^WARN' <<<"$out" && status=1
fi

# 2. Consistency across the files.
"$VENV/bin/python" - "$DIR" "${FILES[@]}" <<'PY' || status=1
import os, re, sys, yaml

directory, files = sys.argv[1], sys.argv[2:]
errors = []
docs = []  # (file, resource)
for f in files:
    try:
        with open(f) as fh:
            docs += [(os.path.basename(f), d) for d in yaml.safe_load_all(fh) if d]
    except yaml.YAMLError as e:
        errors.append(f"{os.path.basename(f)}: {e}")

def of_kind(kind):
    return [d for _, d in docs if isinstance(d, dict) and d.get("kind") == kind]

# kustomization.yaml lists exactly the manifests here.
kpath = next((os.path.join(directory, n) for n in ("kustomization.yaml", "kustomization.yml")
              if os.path.exists(os.path.join(directory, n))), None)
if kpath is None:
    errors.append("no kustomization.yaml")
else:
    with open(kpath) as fh:
        listed = set((yaml.safe_load(fh) or {}).get("resources") or [])
    present = {os.path.basename(f) for f in files}
    for name in sorted(listed - present):
        errors.append(f"kustomization.yaml lists {name}, which is not in {directory}")
    for name in sorted(present - listed):
        errors.append(f"{name} is not listed in kustomization.yaml")

names = lambda kind: {(d.get("metadata") or {}).get("name") for d in of_kind(kind)}
configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in of_kind("ConfigMap")}
secrets = {d["metadata"]["name"]: {**(d.get("data") or {}), **(d.get("stringData") or {})}
           for d in of_kind("Secret")}

def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())

# Pod templates: their labels, containers, and what they reference.
templates = []  # (where, kind, name, template)
for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
    for d in of_kind(kind):
        spec = d.get("spec") or {}
        where = f"{kind.lower()}/{d['metadata']['name']}"
        tpl = spec.get("template") or {}
        labels = (tpl.get("metadata") or {}).get("labels") or {}
        sel = (spec.get("selector") or {}).get("matchLabels")
        if kind != "Job" and not matches(sel, labels):
            errors.append(f"{where}: selector {sel} does not match its pod labels {labels}")
        templates.append((where, kind, d["metadata"]["name"], tpl))

for where, kind, name, tpl in templates:
    pod = tpl.get("spec") or {}
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        cw = f"{where} container {c.get('name')}"
        ports = {p.get("name") for p in c.get("ports") or []}
        env = {e["name"] for e in c.get("env") or []}
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                ref = src["configMapRef"]["name"]
                if ref not in configmaps:
                    errors.append(f"{cw}: envFrom ConfigMap {ref} is not defined here")
                env |= set(configmaps.get(ref, {}))
            if "secretRef" in src:
                ref = src["secretRef"]["name"]
                if ref not in secrets:
                    errors.append(f"{cw}: envFrom Secret {ref} is not defined here")
                env |= set(secrets.get(ref, {}))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            for key, pool in (("configMapKeyRef", configmaps), ("secretKeyRef", secrets)):
                if key in vf and vf[key].get("key") not in pool.get(vf[key].get("name"), {}):
                    errors.append(f"{cw}: {e['name']} refers to a missing {key} {vf[key]}")
        for arg in (c.get("command") or []) + (c.get("args") or []):
            for var in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
                if var not in env:
                    errors.append(f"{cw}: $({var}) in {arg!r} is not in its environment")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
            if isinstance(port, str) and port not in ports:
                errors.append(f"{cw}: {probe} uses port {port!r}, not a named port")
        # Shutdown: the preStop sleep and the drain must fit in the grace period.
        drain = None
        for arg in c.get("args") or []:
            m = re.match(r"--drain-timeout[= ](.+)", str(arg))
            if m:
                val = m.group(1)
                ref = re.fullmatch(r"\$\((\w+)\)", val)
                if ref:
                    val = next((cm[ref.group(1)] for cm in configmaps.values()
                                if ref.group(1) in cm), None)
                drain = int(val) if val is not None and str(val).isdigit() else None
        if drain is not None:
            grace = pod.get("terminationGracePeriodSeconds", 30)
            cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
            sleep = int(cmd[1]) if len(cmd) == 2 and cmd[0].endswith("sleep") and cmd[1].isdigit() else 0
            if grace <= sleep + drain:
                errors.append(f"{where}: terminationGracePeriodSeconds {grace} must exceed the "
                              f"preStop sleep {sleep} + drain timeout {drain}")
    # Volumes mounted exist.
    vols = {v["name"] for v in pod.get("volumes") or []}
    for c in pod.get("containers") or []:
        for m in c.get("volumeMounts") or []:
            if m["name"] not in vols:
                errors.append(f"{where}: volumeMount {m['name']} has no volume")

pod_labels = [((tpl.get("metadata") or {}).get("labels") or {}, tpl) for _, _, _, tpl in templates]

for d in of_kind("Service"):
    sel = (d.get("spec") or {}).get("selector")
    hits = [tpl for labels, tpl in pod_labels if sel and matches(sel, labels)]
    if not hits:
        errors.append(f"service/{d['metadata']['name']}: selector {sel} matches no pod template")
    for p in (d.get("spec") or {}).get("ports") or []:
        tp = p.get("targetPort")
        if isinstance(tp, str) and not any(
                tp in {q.get("name") for c in (t.get("spec") or {}).get("containers") or []
                       for q in c.get("ports") or []} for t in hits):
            errors.append(f"service/{d['metadata']['name']}: targetPort {tp!r} is no named port")

for d in of_kind("PodDisruptionBudget"):
    sel = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels")
    if not any(matches(sel, labels) for labels, _ in pod_labels):
        errors.append(f"poddisruptionbudget/{d['metadata']['name']}: selector matches no pods")

for d in of_kind("HorizontalPodAutoscaler"):
    ref = (d.get("spec") or {}).get("scaleTargetRef") or {}
    if ref.get("name") not in names(ref.get("kind")):
        errors.append(f"horizontalpodautoscaler/{d['metadata']['name']}: target "
                      f"{ref.get('kind')}/{ref.get('name')} is not defined here")

for e in errors:
    print(f"ERROR {e}")
sys.exit(1 if errors else 0)
PY

# 3. The kustomization builds.
if command -v kubectl >/dev/null; then
  kubectl kustomize "$DIR" >/dev/null || status=1
fi

if [ "$status" = 0 ]; then
  echo "validate-k8s: ${#FILES[@]} manifests in ${DIR#"$ROOT"/} valid for Kubernetes $K8S_VERSIONS"
else
  echo "validate-k8s: FAILED" >&2
fi
exit "$status"
