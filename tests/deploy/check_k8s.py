#!/usr/bin/env python3
"""Renders deploy/k8s with `kubectl kustomize` and checks what the manifests promise.

Usage: check_k8s.py DEPLOY_K8S_DIR [--kubectl PATH]

Both the base and the gpu overlay must render and parse as YAML, and then:
  - the control plane is one StatefulSet of one replica, its state (/var/lib/verdict) on a
    ReadWriteOnce volume claim template, with a headless governing Service; the scoring tier
    is one Deployment that rolls with no pod unavailable, is ready only when
    verdict.v1.ScoringService is SERVING, is covered by a PodDisruptionBudget and scaled by a
    HorizontalPodAutoscaler (at least 2 replicas), and its --control_plane names a Service
    of the control plane's pods;
  - each workload's selector matches its pods; gRPC liveness and readiness probes on 50051;
    terminationGracePeriodSeconds above the server's 30 s drain; non-root, no privilege
    escalation, read-only root filesystem, /var/lib/verdict writable;
  - a ClusterIP Service over the control plane with grpc 50051 and metrics 9464, a headless
    Service over the scoring pods with grpc 50051, every Service selecting one workload's pods,
    and a ServiceMonitor whose Services carry the metrics port of both workloads;
  - the flags (the ConfigMap's flag file, read through --flagfile, then the args) are flags
    verdictd defines (read from server/main.cc), with the role and the required ones; files
    they point at are on mounted volumes whose ConfigMap or Secret exists;
  - the overlay gives each workload an nvidia.com/gpu, runs them on GPU nodes, tolerates their
    taint, uses a CUDA image tag and --default_device=cuda:0.
The multi-node training examples (training/pytorchjob and training/indexed-job) must render too:
every rank runs verdict-train with flags it defines (read from core/train/
verdict_train_main.cc) on --device=cpu (ranks average gradients with Gloo) with a CPU request,
non-root with a read-only root, its data, checkpoints and output on the ReadWriteMany claim
defined there; the PyTorchJob has
one Master and at least one Worker; the Indexed Job's ranks get RANK from their completion
index, WORLD_SIZE equal to completions and parallelism, and MASTER_ADDR naming pod 0 under a
headless Service that selects them and carries MASTER_PORT.
Exits 0 if all is well, 1 with one line per problem, 77 if kubectl is not installed.
"""

import os
import re
import shutil
import subprocess
import sys

import yaml

DRAIN_SECONDS = 30
STATE_DIR = "/var/lib/verdict"
SCORING_HEALTH = "verdict.v1.ScoringService"
# The flags each role must set ({name: required value or None for any}).
REQUIRED_FLAGS = {
    "control": {"role": "control", "host": "0.0.0.0", "port": "50051", "metrics_port": "9464",
                "state_dir": STATE_DIR, "data_dir": None, "model_dir": None,
                "max_concurrent_jobs": None},
    "scoring": {"role": "scoring", "host": "0.0.0.0", "port": "50051", "metrics_port": "9464",
                "state_dir": STATE_DIR, "control_plane": None},
}
FILE_FLAGS = ("token_file", "tls_cert", "tls_key", "tls_client_ca", "metrics_basic_auth_file",
              "control_plane_token_file")


SHARED_DIR = "/shared"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SERVER_MAIN = os.path.join(ROOT, "server", "main.cc")
TRAIN_MAIN = os.path.join(ROOT, "core", "train", "verdict_train_main.cc")
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def defined_flags(main_source):
    """The flags a program defines, from its main's source."""
    with open(main_source) as f:
        return set(re.findall(r"ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,", f.read()))


def render(kubectl, path):
    result = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if result.returncode != 0:
        return None, f"kubectl kustomize {path} failed:\n{result.stderr}"
    try:
        return [d for d in yaml.safe_load_all(result.stdout) if d], None
    except yaml.YAMLError as error:
        return None, f"kubectl kustomize {path} printed YAML that does not parse: {error}"


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def parse_flags(lines, known_flags):
    """{name: value} from --name=value lines (later ones win), plus problems."""
    flags, problems = {}, []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("--") or "=" not in line:
            problems.append(f"flag {line!r} is not --name=value")
            continue
        name, value = line[2:].split("=", 1)
        if name not in known_flags:
            problems.append(f"flag --{name} is not one verdictd defines")
        flags[name] = value
    return flags, problems


def mounted_file(container, volumes, path):
    """(volume, key) if `path` lies on one of the container's mounts, else (None, None)."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            return volumes.get(mount["name"]), path[len(prefix):]
    return None, None


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"].get("labels", {})


def check_server(workload, docs, role, known_flags, problem):
    """Checks one verdictd workload's pods; returns (flags, container or None)."""
    spec = workload["spec"]
    pod = spec["template"]["spec"]
    if not selects(spec.get("selector", {}).get("matchLabels"), pod_labels(workload)):
        problem("its selector does not match its pod labels")

    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= DRAIN_SECONDS:
        problem(f"terminationGracePeriodSeconds {grace} is not above the {DRAIN_SECONDS} s drain")
    pod_security = pod.get("securityContext", {})
    if pod_security.get("runAsNonRoot") is not True or pod_security.get("runAsUser", 0) == 0:
        problem("the pod does not run as a non-root user")

    containers = pod.get("containers", [])
    if len(containers) != 1:
        problem(f"expected one container, found {len(containers)}")
        return {}, None
    container = containers[0]
    security = container.get("securityContext", {})
    if security.get("readOnlyRootFilesystem") is not True:
        problem("the root filesystem is not read-only")
    if security.get("allowPrivilegeEscalation") is not False:
        problem("privilege escalation is allowed")
    if "ALL" not in security.get("capabilities", {}).get("drop", []):
        problem("capabilities are not all dropped")

    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if ports.get("grpc") != 50051 or ports.get("metrics") != 9464:
        problem(f"container ports are {ports}, expected grpc 50051 and metrics 9464")
    for probe in ("livenessProbe", "readinessProbe"):
        grpc = container.get(probe, {}).get("grpc")
        if not grpc or grpc.get("port") != 50051:
            problem(f"{probe} is not a gRPC probe on port 50051")
    liveness = container.get("livenessProbe", {})
    if liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3) <= DRAIN_SECONDS:
        problem("the liveness probe would restart a server that is draining")
    if liveness.get("grpc", {}).get("service", ""):
        problem("the liveness probe checks one service: a server without a model is restarted")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    state = [m for m in container.get("volumeMounts", []) if m["mountPath"] == STATE_DIR]
    if not state:
        problem(f"nothing is mounted at {STATE_DIR}")
    elif state[0].get("readOnly"):
        problem(f"{STATE_DIR} is mounted read-only")

    config_maps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}

    def file_exists(path):
        volume, key = mounted_file(container, volumes, path)
        if volume is None:
            return False
        if "configMap" in volume:
            source = config_maps.get(volume["configMap"]["name"], {})
        elif "secret" in volume:
            source = secrets.get(volume["secret"]["secretName"], {})
        else:
            return True  # on a writable volume: the server's own files
        return key in {**source.get("data", {}), **source.get("stringData", {})}

    args = container.get("args", []) + container.get("command", [])[1:]
    lines = []
    for arg in args:
        if arg.startswith("--flagfile="):
            for path in arg.split("=", 1)[1].split(","):
                volume, key = mounted_file(container, volumes, path)
                config_map = config_maps.get((volume or {}).get("configMap", {}).get("name"))
                if config_map is None or key not in config_map.get("data", {}):
                    problem(f"--flagfile {path} is not a file of a ConfigMap defined here")
                else:
                    lines += config_map["data"][key].splitlines()
        lines.append(arg)
    flags, flag_problems = parse_flags(lines, known_flags)
    for text in flag_problems:
        problem(text)
    for name, value in REQUIRED_FLAGS[role].items():
        if name not in flags:
            problem(f"--{name} is not set")
        elif value is not None and flags[name] != value:
            problem(f"--{name}={flags[name]}, expected {value}")
    for name in FILE_FLAGS:
        if name in flags and not file_exists(flags[name]):
            problem(f"--{name}={flags[name]} is not a file of a mounted ConfigMap or Secret")
    for name in ("data_dir", "model_dir"):
        if name in flags and not flags[name].startswith(STATE_DIR):
            problem(f"--{name} is outside the state volume")
    return flags, container


def one(docs, kind, where, problems):
    found = by_kind(docs, kind)
    if len(found) != 1:
        problems.append(f"{where}: expected one {kind}, found {len(found)}")
        return None
    return found[0]


def check_render(docs, where, known_flags):
    """Problems, and {role: (workload, flags, container)} for the GPU checks."""
    problems = []
    control = one(docs, "StatefulSet", where, problems)
    scoring = one(docs, "Deployment", where, problems)
    if control is None or scoring is None:
        return problems, {}
    services = by_kind(docs, "Service")
    servers = {}
    for role, workload in (("control", control), ("scoring", scoring)):
        name = f"{where} {workload['kind']} {workload['metadata']['name']}"
        flags, container = check_server(workload, docs, role, known_flags,
                                        lambda text, name=name: problems.append(f"{name}: {text}"))
        servers[role] = (workload, flags, container)

    def problem(text):
        problems.append(f"{where}: {text}")

    # The control plane: one pod, its state on a claim of its own.
    if control["spec"].get("replicas") != 1:
        problem("the control plane StatefulSet does not have exactly one replica (one SQLite "
                "writer)")
    templates = {t["metadata"]["name"]: t for t in control["spec"].get("volumeClaimTemplates", [])}
    mounts = servers["control"][2].get("volumeMounts", []) if servers["control"][2] else []
    state = [m["name"] for m in mounts if m["mountPath"] == STATE_DIR]
    if not state or state[0] not in templates:
        problem(f"the control plane's {STATE_DIR} is not on a volume claim template")
    elif "ReadWriteOnce" not in templates[state[0]]["spec"].get("accessModes", []):
        problem("the control plane's state claim is not ReadWriteOnce")
    governing = [s for s in services if s["metadata"]["name"] == control["spec"].get("serviceName")]
    if not governing or governing[0]["spec"].get("clusterIP") != "None":
        problem(f"the StatefulSet's serviceName {control['spec'].get('serviceName')} is not a "
                "headless Service defined here")

    # The scoring tier: rolls without a gap, ready only when it can score.
    strategy = scoring["spec"].get("strategy", {})
    if (strategy.get("type") != "RollingUpdate"
            or str(strategy.get("rollingUpdate", {}).get("maxUnavailable")) != "0"):
        problem("the scoring Deployment does not roll with maxUnavailable 0")
    container = servers["scoring"][2] or {}
    readiness = container.get("readinessProbe", {}).get("grpc", {})
    if readiness.get("service") != SCORING_HEALTH:
        problem(f"the scoring readiness probe checks service {readiness.get('service', '')!r}, "
                f"not {SCORING_HEALTH}")
    scoring_labels = pod_labels(scoring)
    budgets = [b for b in by_kind(docs, "PodDisruptionBudget")
               if selects(b["spec"].get("selector", {}).get("matchLabels"), scoring_labels)]
    if not budgets or not (budgets[0]["spec"].get("minAvailable", 0) >= 1
                           or "maxUnavailable" in budgets[0]["spec"]):
        problem("no PodDisruptionBudget keeps a scoring replica")
    scalers = [h for h in by_kind(docs, "HorizontalPodAutoscaler")
               if h["spec"].get("scaleTargetRef", {}).get("kind") == "Deployment"
               and h["spec"]["scaleTargetRef"].get("name") == scoring["metadata"]["name"]]
    if not scalers:
        problem("no HorizontalPodAutoscaler scales the scoring Deployment")
    elif scalers[0]["spec"].get("minReplicas", 1) < 2:
        problem("the HorizontalPodAutoscaler allows fewer than 2 scoring replicas")
    elif "replicas" in scoring["spec"]:
        problem("the scoring Deployment sets replicas, which every apply would reset under the "
                "HorizontalPodAutoscaler")

    # Services: each over one workload's pods.
    control_labels = pod_labels(control)
    for service in services:
        selector = service["spec"].get("selector")
        if not (selects(selector, control_labels) or selects(selector, scoring_labels)):
            problem(f"Service {service['metadata']['name']} selects neither workload's pods")
        elif selects(selector, control_labels) and selects(selector, scoring_labels):
            problem(f"Service {service['metadata']['name']} selects both workloads' pods")

    def ports(service):
        return {p.get("name"): p["port"] for p in service["spec"]["ports"]}

    control_cluster = [s for s in services if s["spec"].get("clusterIP") != "None"
                       and selects(s["spec"].get("selector"), control_labels)]
    if not any(ports(s).get("grpc") == 50051 and ports(s).get("metrics") == 9464
               for s in control_cluster):
        problem("no ClusterIP Service over the control plane with grpc 50051 and metrics 9464")
    scoring_headless = [s for s in services if s["spec"].get("clusterIP") == "None"
                        and selects(s["spec"].get("selector"), scoring_labels)]
    if not any(ports(s).get("grpc") == 50051 for s in scoring_headless):
        problem("no headless Service over the scoring pods with grpc 50051")
    target = servers["scoring"][1].get("control_plane", "")
    match = re.fullmatch(r"(?:dns:///)?([a-z0-9-]+)(?:\.[\w.-]+)?:(\d+)", target)
    named = [s for s in services if match and s["metadata"]["name"] == match.group(1)]
    if target and not (named and selects(named[0]["spec"].get("selector"), control_labels)
                       and int(match.group(2)) in ports(named[0]).values()):
        problem(f"--control_plane={target} does not name a Service port of the control plane")

    monitors = by_kind(docs, "ServiceMonitor")
    if not monitors or monitors[0].get("apiVersion") != "monitoring.coreos.com/v1":
        problem("no monitoring.coreos.com/v1 ServiceMonitor")
    for monitor in monitors:
        selector = monitor["spec"].get("selector", {}).get("matchLabels")
        scraped = [s for s in services if selects(selector, s["metadata"].get("labels", {}))
                   and "metrics" in ports(s)]
        for role, labels in (("control plane", control_labels), ("scoring", scoring_labels)):
            if not any(selects(s["spec"].get("selector"), labels) for s in scraped):
                problem(f"the ServiceMonitor scrapes no metrics port of the {role} pods")
        if [e.get("port") for e in monitor["spec"].get("endpoints", [])] != ["metrics"]:
            problem("the ServiceMonitor does not scrape the port named metrics")
    return problems, servers


def check_gpu(servers, where):
    problems = []
    for workload, flags, container in servers.values():
        name = f"{where} {workload['kind']} {workload['metadata']['name']}"
        container = container or {}
        limits = container.get("resources", {}).get("limits", {})
        if str(limits.get("nvidia.com/gpu", "0")) in ("0", ""):
            problems.append(f"{name}: no nvidia.com/gpu limit")
        pod = workload["spec"]["template"]["spec"]
        if not pod.get("nodeSelector") and not pod.get("affinity"):
            problems.append(f"{name}: no node selector or affinity for GPU nodes")
        if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
            problems.append(f"{name}: no toleration for the nvidia.com/gpu taint")
        if flags.get("default_device") != "cuda:0":
            problems.append(f"{name}: --default_device is {flags.get('default_device')}, "
                            "not cuda:0")
        if "cuda" not in container.get("image", "").split(":")[-1]:
            problems.append(f"{name}: image {container.get('image')} is not a CUDA tag")
    return problems


def check_rank_pod(template, claims, known_flags, where):
    """Problems of one rank's pod template (a PyTorchJob replica's or the Indexed Job's)."""
    problems = []

    def problem(text):
        problems.append(f"{where}: {text}")

    pod = template.get("spec", {})
    containers = pod.get("containers", [])
    if len(containers) != 1:
        problem(f"expected one container, found {len(containers)}")
        return problems, {}
    container = containers[0]
    if not container.get("command", [""])[0].endswith("/verdict-train"):
        problem(f"the container runs {container.get('command')}, not verdict-train")
    flags = {}
    for arg in container.get("args", []):
        if not arg.startswith("--") or "=" not in arg:
            problem(f"argument {arg!r} is not --name=value")
            continue
        name, value = arg[2:].split("=", 1)
        if name not in known_flags:
            problem(f"flag --{name} is not one verdict-train defines")
        flags[name] = value
    for name in ("train", "output", "run_dir"):
        if not flags.get(name, "").startswith(SHARED_DIR + "/"):
            problem(f"--{name} is not on the shared volume ({SHARED_DIR})")
    # Data-parallel ranks run on Gloo, so on CPU (core/train/training_config.cc).
    if flags.get("device") != "cpu":
        problem(f"--device is {flags.get('device')}: data-parallel ranks train on cpu (Gloo)")
    if not container.get("resources", {}).get("requests", {}).get("cpu"):
        problem("a rank requests no CPU")
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        problem("the pod does not run as a non-root user")
    if container.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
        problem("the root filesystem is not read-only")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: volumes.get(m["name"], {}) for m in container.get("volumeMounts", [])}
    claim = mounts.get(SHARED_DIR, {}).get("persistentVolumeClaim", {}).get("claimName")
    if claims.get(claim) is None:
        problem(f"{SHARED_DIR} is not on a PersistentVolumeClaim defined here")
    elif "ReadWriteMany" not in claims[claim]["spec"].get("accessModes", []):
        problem(f"claim {claim} is not ReadWriteMany: ranks on other nodes cannot mount it")
    env = {e["name"]: e for e in container.get("env", [])}
    return problems, env


def check_training(docs, known_flags, where):
    problems = []
    claims = {d["metadata"]["name"]: d for d in by_kind(docs, "PersistentVolumeClaim")}
    jobs = by_kind(docs, "PyTorchJob")
    for job in jobs:
        replicas = job["spec"].get("pytorchReplicaSpecs", {})
        if replicas.get("Master", {}).get("replicas") != 1:
            problems.append(f"{where}: the PyTorchJob has no single Master")
        if replicas.get("Worker", {}).get("replicas", 0) < 1:
            problems.append(f"{where}: the PyTorchJob has no Worker")
        for kind, spec in replicas.items():
            found, _ = check_rank_pod(spec.get("template", {}), claims, known_flags,
                                      f"{where} {kind}")
            problems += found
            names = [c.get("name") for c in spec.get("template", {}).get("spec", {})
                     .get("containers", [])]
            if names != ["pytorch"]:
                problems.append(f"{where} {kind}: the operator needs the container named pytorch")
    indexed_jobs = by_kind(docs, "Job")
    for job in indexed_jobs:
        spec = job["spec"]
        template = spec.get("template", {})
        found, env = check_rank_pod(template, claims, known_flags, f"{where} Job")
        problems += found

        def problem(text):
            problems.append(f"{where} Job: {text}")

        if spec.get("completionMode") != "Indexed":
            problem("completionMode is not Indexed: the pods have no rank")
        world = env.get("WORLD_SIZE", {}).get("value")
        if not (world and str(spec.get("completions")) == world == str(spec.get("parallelism"))):
            problem(f"WORLD_SIZE {world} is not both completions ({spec.get('completions')}) "
                    f"and parallelism ({spec.get('parallelism')})")
        rank = env.get("RANK", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if rank != COMPLETION_INDEX:
            problem("RANK does not come from the pod's completion index")
        subdomain = template.get("spec", {}).get("subdomain")
        master = f"{job['metadata']['name']}-0.{subdomain}"
        if env.get("MASTER_ADDR", {}).get("value") != master:
            problem(f"MASTER_ADDR is {env.get('MASTER_ADDR', {}).get('value')}, not {master}")
        port = env.get("MASTER_PORT", {}).get("value")
        services = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == subdomain]
        labels = template.get("metadata", {}).get("labels", {})
        if (not services or services[0]["spec"].get("clusterIP") != "None"
                or not selects(services[0]["spec"].get("selector"), labels)):
            problem(f"no headless Service {subdomain} selecting the ranks")
        elif not any(str(p.get("port")) == port for p in services[0]["spec"].get("ports", [])):
            problem(f"the Service {subdomain} does not carry MASTER_PORT {port}")
    if not jobs and not indexed_jobs:
        problems.append(f"{where}: neither a PyTorchJob nor a Job")
    return problems


def main(argv):
    args = list(argv[1:])
    kubectl = shutil.which("kubectl")
    if "--kubectl" in args:
        at = args.index("--kubectl")
        kubectl = args[at + 1]
        del args[at:at + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    if not kubectl:
        print("kubectl is not installed (scripts/install-deps.sh installs it); skipping")
        return 77
    root = args[0]
    problems = []
    base, error = render(kubectl, os.path.join(root, "base"))
    gpu, gpu_error = render(kubectl, os.path.join(root, "overlays", "gpu"))
    problems += [e for e in (error, gpu_error) if e]
    server_flags = defined_flags(SERVER_MAIN) | {"flagfile"}
    if base is not None:
        problems += check_render(base, "base", server_flags)[0]
    if gpu is not None:
        found, servers = check_render(gpu, "overlays/gpu", server_flags)
        problems += found + check_gpu(servers, "overlays/gpu")
    known_flags = defined_flags(TRAIN_MAIN)
    for example in ("pytorchjob", "indexed-job"):
        docs, error = render(kubectl, os.path.join(root, "training", example))
        if error:
            problems.append(error)
        else:
            problems += check_training(docs, known_flags, f"training/{example}")
    for problem in problems:
        print(problem)
    if not problems:
        print(f"base: {len(base)} objects, overlays/gpu: {len(gpu)} objects, training/pytorchjob "
              "and training/indexed-job: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
