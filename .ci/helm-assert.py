"""What the chart promises, checked on its rendered manifests (called by .ci/helm-check).

usage: helm-assert.py PACKS_TOML DEFAULTS_RENDER ALL_ON_RENDER [OPTION=RENDER ...]

OPTION=RENDER: a render of the defaults with one monitoring option (serviceMonitor, dashboards,
alerts) on.

Schema validation says the manifests are well-formed; this says they are the right ones: the
production environment, probes on the right ports, secrets referenced where they exist, the
migration hook ordered before the server, selectors that pick the server pods and not the Job's,
the packs ConfigMap equal to the repository's packs.toml, the monitoring resources (CRDs that
kubernetes-validate has no schema for) well-formed, and the dashboard ConfigMap equal to the
repository's dashboard.
"""

import json
import os
import re
import sys

import yaml

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def load(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    return docs, by_kind


def one(by_kind, kind, name_suffix=""):
    items = [d for d in by_kind.get(kind, []) if d["metadata"]["name"].endswith(name_suffix)]
    check(len(items) == 1, f"exactly one {kind}{' *' + name_suffix if name_suffix else ''}")
    return items[0] if items else {}


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def hook_weight(doc):
    return int(doc["metadata"].get("annotations", {}).get("helm.sh/hook-weight", "0"))


DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "helm", "credits", "dashboards", "credits.json")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

# What each monitoring option renders when on: a predicate over a document.
MONITORING = {
    "serviceMonitor": lambda d: d["kind"] == "ServiceMonitor",
    "dashboards": lambda d: d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboards"),
    "alerts": lambda d: d["kind"] == "PrometheusRule",
}


def check_prometheus_rule(label, d):
    check(d["apiVersion"] == "monitoring.coreos.com/v1", f"{label}: PrometheusRule is monitoring.coreos.com/v1")
    s = d["spec"]
    groups = s.get("groups", [])
    check(set(s) == {"groups"} and groups and all(set(g) <= {"name", "interval", "rules"} for g in groups),
          f"{label}: the PrometheusRule has groups of name and rules only")
    rules = [r for g in groups for r in g.get("rules", [])]
    names = [r.get("alert") for r in rules]
    check(rules and len(set(names)) == len(names) and all(n and n.startswith("Credits") for n in names),
          f"{label}: {len(rules)} alerts, named Credits…, each once")
    check(all(set(r) <= {"alert", "expr", "for", "labels", "annotations"} for r in rules),
          f"{label}: alerts use only alert, expr, for, labels, annotations")
    check(all(isinstance(r.get("expr"), str) and r["expr"].strip() for r in rules), f"{label}: every alert has an expr")
    check(all(DURATION.match(str(r["for"])) for r in rules if "for" in r), f"{label}: every `for` is a duration")
    check(all(r.get("labels", {}).get("severity") and r.get("annotations", {}).get("summary") for r in rules),
          f"{label}: every alert has a severity and a summary")
    return rules


def check_dashboards(label, d):
    data = d.get("data", {})
    check(set(data) == {"credits.json"}, f"{label}: the dashboards ConfigMap holds credits.json")
    try:
        ok = json.loads(data.get("credits.json", "")) == json.load(open(DASHBOARD))
    except ValueError:
        ok = False
    check(ok, f"{label}: its credits.json is the repository's helm/credits/dashboards/credits.json")


def check_monitoring(label, docs):
    for d in docs:
        if MONITORING["alerts"](d):
            check_prometheus_rule(label, d)
        elif MONITORING["dashboards"](d):
            check_dashboards(label, d)


def check_render(label, path, packs_toml):
    print(f"--- {label}: {path}")
    docs, by_kind = load(path)
    dep = one(by_kind, "Deployment")
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    pod_labels = pod["metadata"]["labels"]
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(set(ports) == {"grpc", "http"}, f"{label}: container ports are named grpc and http")
    env = env_map(c)
    for name, value in [("APP_ENV", "production"), ("MIGRATE_ON_START", "false"), ("LOG_FORMAT", "json")]:
        check(env.get(name, {}).get("value") == value, f"{label}: {name}={value}")
    check(c.get("args") == ["serve"], f"{label}: the server runs `credits serve`")

    # CREDIT_PACKS_FILE points into the mounted ConfigMap.
    packs_file = env.get("CREDIT_PACKS_FILE", {}).get("value", "")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    packs_dir, _, packs_key = packs_file.rpartition("/")
    packs_mount = mounts.get(packs_dir, {})
    packs_volume = volumes.get(packs_mount.get("name"), {})
    cm_name = packs_volume.get("configMap", {}).get("name")
    cms = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    check(cm_name in cms and packs_key in cms[cm_name]["data"],
          f"{label}: CREDIT_PACKS_FILE={packs_file} is the ConfigMap {cm_name}'s {packs_key}")
    if packs_toml is not None and cm_name in cms:
        check(cms[cm_name]["data"].get(packs_key) == packs_toml,
              f"{label}: the default packs.toml in values.yaml equals the repository's packs.toml")
    check("emptyDir" in volumes.get(mounts.get("/tmp", {}).get("name"), {}),
          f"{label}: a writable emptyDir at /tmp")

    # Secrets: referenced by name and key; a Secret the chart renders must hold the key.
    secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
    for name in ["DATABASE_URL", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY",
                 "STRIPE_WEBHOOK_SECRET", "GRPC_AUTH_TOKENS"]:
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
        check(ref is not None, f"{label}: {name} comes from a Secret")
        if ref and ref["name"] in secrets:
            check(ref["key"] in secrets[ref["name"]].get("data", {}),
                  f"{label}: the chart's Secret {ref['name']} holds {ref['key']} for {name}")
    check("checksum/packs" in pod["metadata"].get("annotations", {}),
          f"{label}: a packs checksum annotation rolls the pods")

    # Probes.
    rp, lp, sp = c.get("readinessProbe", {}), c.get("livenessProbe", {}), c.get("startupProbe", {})
    check(rp.get("grpc", {}).get("port") == ports.get("grpc")
          and rp["grpc"].get("service") == "credits.v1.CreditsService",
          f"{label}: readiness is a grpc probe of credits.v1.CreditsService on the grpc port")
    check(lp.get("httpGet", {}) == {"path": "/healthz", "port": "http"}, f"{label}: liveness GET /healthz")
    check(sp.get("httpGet", {}) == {"path": "/readyz", "port": "http"}, f"{label}: startup GET /readyz")

    # Security.
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{label}: pod runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label}: seccomp RuntimeDefault")
    check(csc.get("readOnlyRootFilesystem") is True, f"{label}: read-only root filesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"{label}: no privilege escalation")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: every capability dropped")
    check(c.get("resources", {}).get("requests") is not None, f"{label}: resource requests set")

    # Selection: the server pods, never the migration Job's.
    selector = dep["spec"]["selector"]["matchLabels"]
    check(matches(selector, pod_labels), f"{label}: the Deployment selects its pods")
    job = one(by_kind, "Job", "-migrations")
    job_pod_labels = job["spec"]["template"]["metadata"]["labels"]
    svc = one(by_kind, "Service")
    check(matches(svc["spec"]["selector"], pod_labels) and not matches(svc["spec"]["selector"], job_pod_labels),
          f"{label}: the Service selects the server pods, not the migration pods")
    check({p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
          == {"grpc": (50051, "grpc"), "http": (8080, "http")},
          f"{label}: Service ports grpc 50051 and http 8080")
    anti = spec.get("affinity", {}).get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
    if label == "defaults":
        check(any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                  and matches(t["podAffinityTerm"]["labelSelector"]["matchLabels"], pod_labels) for t in anti),
              f"{label}: preferred pod anti-affinity by hostname")

    # The migration hook: before install/upgrade, `credits migrate`, DATABASE_URL from a Secret
    # that exists before it (an existing one, or a hook Secret with a lower weight).
    ann = job["metadata"].get("annotations", {})
    check(set(ann.get("helm.sh/hook", "").split(",")) == {"pre-install", "pre-upgrade"},
          f"{label}: the migration Job is a pre-install,pre-upgrade hook")
    check("helm.sh/hook-delete-policy" in ann and "helm.sh/hook-weight" in ann,
          f"{label}: the migration Job has a hook weight and delete policy")
    (jc,) = job["spec"]["template"]["spec"]["containers"]
    check(jc.get("args") == ["migrate"], f"{label}: the Job runs `credits migrate`")
    jref = env_map(jc).get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if jref.get("name") in secrets:
        hook_secret = secrets[jref["name"]]
        check("helm.sh/hook" in hook_secret["metadata"].get("annotations", {})
              and hook_weight(hook_secret) < hook_weight(job)
              and jref["key"] in hook_secret.get("data", {}),
              f"{label}: the Job's DATABASE_URL Secret is a hook created before it")
    else:
        check(jref.get("name") == env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"],
              f"{label}: the Job reads DATABASE_URL from the same existing Secret as the server")

    check_monitoring(label, docs)
    for kind in ["HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "Ingress"]:
        for d in by_kind.get(kind, []):
            s = d["spec"]
            if kind == "HorizontalPodAutoscaler":
                check(s["scaleTargetRef"]["name"] == dep["metadata"]["name"] and "replicas" not in dep["spec"],
                      f"{label}: the HPA scales the Deployment, which sets no replicas of its own")
            elif kind == "PodDisruptionBudget":
                check(matches(s["selector"]["matchLabels"], pod_labels), f"{label}: the PDB covers the server pods")
            elif kind == "NetworkPolicy":
                sel = s["podSelector"]["matchLabels"]
                check(matches(sel, pod_labels) and not matches(sel, job_pod_labels),
                      f"{label}: the NetworkPolicy covers the server pods, not the Job's")
            elif kind == "ServiceMonitor":
                check(d["apiVersion"] == "monitoring.coreos.com/v1", f"{label}: ServiceMonitor is monitoring.coreos.com/v1")
                check(matches(s["selector"]["matchLabels"], svc["metadata"]["labels"]),
                      f"{label}: the ServiceMonitor selects the Service")
                check([(e.get("port"), e.get("path")) for e in s["endpoints"]] == [("http", "/metrics")],
                      f"{label}: the ServiceMonitor scrapes /metrics on the http port")
                allowed = {"port", "path", "scheme", "interval", "scrapeTimeout"}
                check(all(set(e) <= allowed for e in s["endpoints"]) and set(s) <= {"selector", "namespaceSelector", "endpoints"},
                      f"{label}: the ServiceMonitor uses only known fields")
            elif kind == "Ingress":
                paths = [(p["path"], p["pathType"], p["backend"]["service"]["name"], p["backend"]["service"]["port"].get("name"))
                         for r in s["rules"] for p in r["http"]["paths"]]
                check(paths and all(p == ("/account/stripe-webhook/", "Exact", svc["metadata"]["name"], "http") for p in paths),
                      f"{label}: the Ingress exposes only /account/stripe-webhook/ on the http port")
    return docs, by_kind


def monitoring(docs):
    """The monitoring options whose resource a render holds."""
    return {option for option, renders in MONITORING.items() if any(renders(d) for d in docs)}


def main():
    packs_path, defaults_path, all_on_path = sys.argv[1:4]
    packs_toml = open(packs_path).read()
    docs, _ = check_render("defaults", defaults_path, packs_toml)
    check(monitoring(docs) == set(), "defaults: no ServiceMonitor, PrometheusRule or dashboards ConfigMap")
    docs, by_kind = check_render("all-on", all_on_path, None)
    for kind in ["HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "Ingress",
                 "PrometheusRule"]:
        check(kind in by_kind, f"all-on: renders a {kind}")
    check(monitoring(docs) == set(MONITORING), "all-on: the ServiceMonitor, PrometheusRule and dashboards ConfigMap")
    check("Secret" not in by_kind, "all-on: existing Secrets only, the chart creates none")
    # ci/all-on-values.yaml: the labels, the sidecar label and namespace it sets arrive.
    for rule in by_kind.get("PrometheusRule", []):
        check(rule["metadata"]["labels"].get("release") == "prometheus", "all-on: alerts.labels on the PrometheusRule")
        check(all(r["labels"].get("team") == "billing" for g in rule["spec"]["groups"] for r in g["rules"]),
              "all-on: alerts.alertLabels on every alert")
    for cm in filter(MONITORING["dashboards"], docs):
        check(cm["metadata"]["namespace"] == "monitoring" and cm["metadata"]["labels"].get("grafana_dashboard") == "true"
              and cm["metadata"].get("annotations", {}).get("grafana_folder") == "Billing",
              "all-on: the dashboards ConfigMap in dashboards.namespace with the sidecar label and folder annotation")
    for arg in sys.argv[4:]:
        option, _, path = arg.partition("=")
        print(f"--- {option} alone: {path}")
        docs, _ = load(path)
        check_monitoring(f"{option} alone", docs)
        check(monitoring(docs) == {option}, f"{option} alone: renders its resource and no other monitoring one")
        for cm in filter(MONITORING["dashboards"], docs):
            check(cm["metadata"]["namespace"] == "billing" and cm["metadata"]["labels"].get("grafana_dashboard") == "1",
                  f"{option} alone: the dashboards ConfigMap in the release namespace, labelled grafana_dashboard: \"1\"")
    if failures:
        print(f"{len(failures)} chart promise(s) broken", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
