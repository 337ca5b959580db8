"""Check a Tiltfile offline: evaluate it with starlark-pyo3 against stubs of Tilt's builtins.

Catches what `tilt up` would reject before touching a cluster: syntax errors, undefined
names and f-strings (Tilt's Go Starlark has none), unknown keyword arguments (the stubs
carry Tilt's real parameter names), missing paths, `fail()`, and the resource assembly
errors Tilt raises at load time (an unknown workload, an object selector that matches
nothing or twice, a dependency on no resource, an image built but never deployed).
`helm()` runs the real `helm template`, as Tilt does, so the Tiltfile's processing of the
rendered objects is exercised too. `ext://restart_process` is emulated from
tilt-dev/tilt-extensions restart_process/Tiltfile. Usage: python tests/support/tiltcheck.py Tiltfile
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import starlark as sl
import yaml

REPO = Path(__file__).resolve().parents[2]
HELM_DIRS = (REPO / ".tools/helm-4.3.1",)

#: Kinds Tilt treats as workloads (they carry a pod template): one resource each.
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
LABEL_RE = re.compile(r"^[A-Za-z0-9]([-_.A-Za-z0-9]{0,61}[A-Za-z0-9])?$")

#: Builtins accepted without checking their arguments (not used by our Tiltfile today).
UNCHECKED = (
    "default_registry",
    "watch_file",
    "update_settings",
    "secret_settings",
    "watch_settings",
    "ci_settings",
    "analytics_settings",
    "docker_prune_settings",
    "enable_feature",
    "trigger_mode",
    "link",
    "restart_container",
)


class HelmMissing(RuntimeError):
    """No helm binary: the checker cannot render the chart as Tilt would."""


def find_helm() -> str:
    """The helm that `make helm` installs, else one on PATH."""
    if env := os.environ.get("TILTCHECK_HELM"):
        return env
    for d in HELM_DIRS:
        if (d / "helm").is_file():
            return str(d / "helm")
    if found := shutil.which("helm"):
        return found
    raise HelmMissing("helm not found: run `make helm` (installs .tools/helm-4.3.1/helm)")


def image_name(ref: str) -> str:
    """An image reference without its tag or digest (`repo:5000/a/b:tag` -> `repo:5000/a/b`)."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return ref[: len(ref) - len(last)] + last.split(":", 1)[0]


@dataclass
class Image:
    """One docker_build (or the child build docker_build_with_restart declares)."""

    ref: str
    context: str
    dockerfile_contents: str | None
    live_update: list[dict[str, Any]]
    entrypoint: list[str]


@dataclass
class Resource:
    """One Tilt resource as assembled at load time, with what k8s_resource set on it."""

    name: str
    objects: list[dict[str, Any]]
    resource_deps: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    port_forwards: list[Any] = field(default_factory=list)
    pod_readiness: str = ""


@dataclass
class Result:
    """What the check found: problems (empty means Tilt would load it) and what was declared."""

    problems: list[str]
    calls: list[tuple[str, str]]
    warnings: list[str]
    images: dict[str, Image]
    objects: list[dict[str, Any]]
    resources: dict[str, Resource]

    def deployed(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """The object's containers as Tilt deploys them: entrypoints of built images applied."""
        spec = obj["spec"]["template"]["spec"]
        out = []
        for c in spec.get("initContainers", []) + spec["containers"]:
            image = self.images.get(image_name(c["image"]))
            if image is not None and image.entrypoint:
                c = {**c, "command": image.entrypoint}
            out.append(c)
        return out


def _dialect() -> sl.Dialect:
    # Tilt's Go Starlark: top-level if/for, load(), no f-strings, no type annotations.
    d = sl.Dialect.standard()
    d.enable_top_level_stmt = True
    d.enable_load = True
    d.enable_f_strings = False
    d.enable_types = sl.DialectTypes.DISABLE
    return d


GLOBALS = sl.Globals.extended_by(
    [sl.LibraryExtension.StructType, sl.LibraryExtension.Json, sl.LibraryExtension.Print]
)


class Tilt:
    """Stubs of the Tilt builtins, recording calls; method names and parameters are Tilt's."""

    def __init__(self, root: Path, context: str, local: Callable[[str], str]) -> None:
        self.root = root
        self.context = context
        self.local_output = local
        self.problems: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.warnings: list[str] = []
        self.images: dict[str, Image] = {}
        self.objects: list[dict[str, Any]] = []
        self.resource_calls: list[dict[str, Any]] = []

    # -- helpers -------------------------------------------------------------------------------
    def _path(self, p: str, what: str) -> Path:
        path = self.root / p
        if not path.exists():
            self.problems.append(f"{what}: path does not exist: {p}")
        return path

    def _under(self, p: str, context: str, what: str) -> None:
        path, ctx = (self.root / p).resolve(), (self.root / context).resolve()
        if path != ctx and ctx not in path.parents:
            self.problems.append(f"{what}: {p} is outside the build context {context}")

    def _steps(self, ref: str, steps: Iterable[dict[str, Any]], context: str) -> list[dict]:
        steps = list(steps or [])
        order = {"fall_back_on": 0, "sync": 1, "run": 2}
        kinds = [s.get("step") for s in steps]
        if None in kinds:
            self.problems.append(f"docker_build({ref!r}): live_update holds a non-step value")
            return steps
        if kinds != sorted(kinds, key=order.__getitem__):
            self.problems.append(
                f"docker_build({ref!r}): live_update steps must be fall_back_on, then sync, "
                f"then run; got {kinds}"
            )
        for s in steps:
            for local in s.get("files", [s.get("local_path")]):
                if local is not None:
                    self._path(local, f"{s['step']} in docker_build({ref!r})")
                    self._under(local, context, f"{s['step']} in docker_build({ref!r})")
        return steps

    # -- images --------------------------------------------------------------------------------
    def docker_build(
        self,
        ref,
        context,
        build_args=None,
        dockerfile="Dockerfile",
        dockerfile_contents=None,
        live_update=None,
        match_in_env_vars=False,
        ignore=None,
        only=None,
        entrypoint=None,
        target="",
        ssh="",
        network="",
        secret="",
        extra_tag="",
        container_args=None,
        cache_from=None,
        pull=False,
        platform="",
        extra_hosts=None,
    ):
        self.calls.append(("docker_build", ref))
        self._path(context, f"docker_build({ref!r}) context")
        if dockerfile_contents is None:
            self._path(os.path.join(context, dockerfile), f"docker_build({ref!r}) dockerfile")
        if ref in self.images:
            self.problems.append(f"docker_build: image {ref!r} is defined twice")
        if isinstance(entrypoint, str):
            entrypoint = ["sh", "-c", entrypoint]
        self.images[ref] = Image(
            ref=ref,
            context=context,
            dockerfile_contents=dockerfile_contents,
            live_update=self._steps(ref, live_update, context),
            entrypoint=list(entrypoint or []),
        )

    def docker_build_with_restart(
        self,
        ref,
        context,
        entrypoint,
        live_update,
        base_suffix="-base",
        restart_file="/.restart-proc",
        **kwargs,
    ):
        # ext://restart_process: build the image as `<ref>-base`, then `<ref>` FROM it with the
        # restart wrapper, whose command reruns `entrypoint` when a live update ends.
        self.calls.append(("docker_build_with_restart", ref))
        if not live_update:
            self.problems.append("docker_build_with_restart requires at least one live_update step")
        base = f"{ref}{base_suffix}"
        self.docker_build(base, context, **kwargs)
        child = {k: v for k, v in kwargs.items() if k not in ("dockerfile", "dockerfile_contents")}
        child.pop("target", None)
        wrapper = ["/tilt-restart-wrapper", f"--watch_file={restart_file}"]
        if isinstance(entrypoint, str):
            wrapped = wrapper + ["sh", "-c", entrypoint]
        else:
            wrapped = wrapper + list(entrypoint)
        dockerfile = (
            "FROM tiltdev/restart-helper:2020-04-27 as restart-helper\n"
            f"FROM {base}\n"
            f'RUN ["touch", "{restart_file}"]\n'
            "COPY --from=restart-helper /tilt-restart-wrapper /\n"
            "COPY --from=restart-helper /entr /\n"
        )
        steps = list(live_update) + [self.run(f"date > {restart_file}")]
        self.docker_build(
            ref,
            context,
            entrypoint=wrapped,
            dockerfile_contents=dockerfile,
            live_update=steps,
            **child,
        )

    def fall_back_on(self, files):
        return {"step": "fall_back_on", "files": [files] if isinstance(files, str) else files}

    def sync(self, local_path, remote_path):
        if not remote_path.startswith("/"):
            self.problems.append(f"sync: remote path must be absolute: {remote_path}")
        return {"step": "sync", "local_path": local_path, "remote_path": remote_path}

    def run(self, cmd, trigger=None, echo_off=False):
        return {"step": "run", "cmd": cmd, "trigger": trigger or []}

    # -- kubernetes ----------------------------------------------------------------------------
    def helm(
        self,
        pathToChartDir,
        name="",
        namespace="",
        values=None,
        set=None,  # shadows a builtin: Tilt's parameter name
        kube_version="",
        skip_crds=False,
    ):
        self.calls.append(("helm", pathToChartDir))
        values = [values] if isinstance(values, str) else list(values or [])
        sets = [set] if isinstance(set, str) else list(set or [])
        self._path(pathToChartDir, "helm chart")
        for v in values:
            self._path(v, "helm values")
        # Tilt runs `helm template`: no cluster, so no API versions and `lookup` finds nothing.
        cmd = [find_helm(), "template", name or "chart", str(self.root / pathToChartDir)]
        cmd += ["--namespace", namespace] if namespace else []
        cmd += ["--kube-version", kube_version] if kube_version else []
        cmd += ["--skip-crds"] if skip_crds else ["--include-crds"]
        for v in values:
            cmd += ["--values", str(self.root / v)]
        for s in sets:
            cmd += ["--set", s]
        with tempfile.TemporaryDirectory() as home:
            env = {
                **os.environ,
                "HELM_CACHE_HOME": home,
                "HELM_CONFIG_HOME": home,
                "HELM_DATA_HOME": home,
                "KUBECONFIG": os.path.join(home, "kubeconfig"),
            }
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode:
            raise ValueError(f"helm template failed: {out.stderr.strip()}")
        return out.stdout

    def decode_yaml_stream(self, yaml_text):
        return [d for d in yaml.safe_load_all(yaml_text) if d is not None]

    def encode_yaml_stream(self, objs):
        return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs)

    def k8s_yaml(self, yaml_text, allow_duplicates=False):
        if isinstance(yaml_text, list):
            for y in yaml_text:
                self.k8s_yaml(y, allow_duplicates)
            return
        if "\n" not in yaml_text and not yaml_text.lstrip().startswith(("{", "apiVersion")):
            yaml_text = self._path(yaml_text, "k8s_yaml").read_text()
        seen = {_object_id(o) for o in self.objects}
        for obj in self.decode_yaml_stream(yaml_text):
            if _object_id(obj) in seen and not allow_duplicates:
                self.problems.append(f"k8s_yaml: duplicate object {_object_id(obj)}")
            self.objects.append(obj)
        self.calls.append(("k8s_yaml", f"{len(self.objects)} objects"))

    def k8s_resource(
        self,
        workload="",
        new_name="",
        port_forwards=None,
        extra_pod_selectors=None,
        trigger_mode=None,
        resource_deps=None,
        objects=None,
        auto_init=True,
        pod_readiness="",
        links=None,
        labels=None,
        discovery_strategy="",
    ):
        self.calls.append(("k8s_resource", workload or new_name))
        if pod_readiness not in ("", "ignore", "wait"):
            self.problems.append(f"k8s_resource: pod_readiness is ignore or wait: {pod_readiness}")
        self.resource_calls.append(
            {
                "workload": workload,
                "new_name": new_name,
                "port_forwards": [port_forwards]
                if isinstance(port_forwards, int | str | dict)
                else list(port_forwards or []),
                "resource_deps": list(resource_deps or []),
                "objects": list(objects or []),
                "pod_readiness": pod_readiness,
                "labels": [labels] if isinstance(labels, str) else list(labels or []),
            }
        )

    def port_forward(self, local_port, container_port=None, name=None, link_path=None, host=None):
        return {"local_port": local_port, "container_port": container_port, "name": name}

    def allow_k8s_contexts(self, contexts):
        self.calls.append(("allow_k8s_contexts", str(contexts)))

    def version_settings(self, check_updates=True, constraint=""):
        self.calls.append(("version_settings", constraint))

    def k8s_context(self):
        return self.context

    def local(
        self,
        command,
        quiet=False,
        command_bat="",
        echo_off=False,
        env=None,
        dir="",  # shadows a builtin: Tilt's parameter name
        stdin=None,
    ):
        line = command if isinstance(command, str) else " ".join(command)
        self.calls.append(("local", line))
        return self.local_output(line)

    def read_file(self, file_path, default=None):
        path = self.root / file_path
        if not path.exists():
            if default is not None:
                return default
            self.problems.append(f"read_file: path does not exist: {file_path}")
            return ""
        return path.read_text()

    def warn(self, msg):
        self.warnings.append(msg)

    # -- load-time assembly (what Tilt checks after the Tiltfile ran) --------------------------
    def assemble(self) -> dict[str, Resource]:
        resources: dict[str, Resource] = {}
        unattached = list(self.objects)
        workloads = [o for o in self.objects if o.get("kind") in WORKLOAD_KINDS]
        names = [o["metadata"]["name"] for o in workloads]
        for obj in workloads:
            name = obj["metadata"]["name"]
            if names.count(name) > 1:
                name = f"{name}:{obj['kind'].lower()}"
            labels = obj["spec"].get("template", {}).get("metadata", {}).get("labels", {})
            services = [
                o
                for o in unattached
                if o.get("kind") == "Service"
                and o["spec"].get("selector")
                and all(labels.get(k) == v for k, v in o["spec"]["selector"].items())
            ]
            unattached = [o for o in unattached if o is not obj and o not in services]
            resources[name] = Resource(name, [obj, *services])

        for call in self.resource_calls:
            name = call["workload"]
            if name:
                if name not in resources:
                    self.problems.append(
                        f"k8s_resource: unknown workload {name!r}; known: {sorted(resources)}"
                    )
                    continue
                res = resources[name]
                if call["new_name"]:
                    del resources[name]
                    res.name = call["new_name"]
                    resources[res.name] = res
            elif call["new_name"]:
                if not call["objects"]:
                    self.problems.append(f"k8s_resource({call['new_name']!r}): no objects")
                res = resources.setdefault(call["new_name"], Resource(call["new_name"], []))
            else:
                self.problems.append("k8s_resource: give workload or new_name")
                continue
            for selector in call["objects"]:
                matches = [o for o in self.objects if _selects(selector, o)]
                if len(matches) != 1:
                    self.problems.append(
                        f"k8s_resource({res.name!r}): object selector {selector!r} matches "
                        f"{len(matches)} objects"
                    )
                elif not any(o is matches[0] for o in unattached):
                    self.problems.append(
                        f"k8s_resource({res.name!r}): {selector!r} already belongs to a resource"
                    )
                else:
                    res.objects.append(matches[0])
                    unattached = [o for o in unattached if o is not matches[0]]
            res.resource_deps += call["resource_deps"]
            res.labels += call["labels"]
            res.port_forwards += call["port_forwards"]
            res.pod_readiness = call["pod_readiness"] or res.pod_readiness
        for res in resources.values():
            for dep in res.resource_deps:
                if dep not in resources:
                    self.problems.append(f"resource {res.name!r}: unknown resource_deps {dep!r}")
            for label in res.labels:
                if not LABEL_RE.match(label):
                    self.problems.append(f"resource {res.name!r}: invalid label {label!r}")
        deployed = {image_name(c["image"]) for o in workloads for c in _pod_containers(o)}
        bases = {
            line.split()[1]
            for img in self.images.values()
            for line in (img.dockerfile_contents or "").splitlines()
            if line.startswith("FROM ")
        }
        for ref in self.images:
            if ref not in deployed and ref not in bases:
                self.problems.append(f"image {ref!r} is built but no deployed container uses it")
        return resources


def _pod_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def _object_id(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('name')}:{obj.get('kind', '').lower()}:{meta.get('namespace', '')}"


def _selects(selector: str, obj: dict[str, Any]) -> bool:
    """Tilt's object selector `name[:kind[:namespace]]` (case-insensitive kind)."""
    name, kind, namespace = ([*selector.split(":"), "", ""])[:3]
    meta = obj.get("metadata", {})
    return (
        meta.get("name") == name
        and (not kind or obj.get("kind", "").lower() == kind.lower())
        and (not namespace or meta.get("namespace", "default") == namespace)
    )


def _module(tilt: Tilt) -> sl.Module:
    m = sl.Module()
    for name in (
        "docker_build",
        "fall_back_on",
        "sync",
        "run",
        "helm",
        "decode_yaml_stream",
        "encode_yaml_stream",
        "k8s_yaml",
        "k8s_resource",
        "port_forward",
        "allow_k8s_contexts",
        "version_settings",
        "k8s_context",
        "local",
        "read_file",
        "warn",
    ):
        m.add_callable(name, getattr(tilt, name))
    for name in UNCHECKED:
        m.add_callable(name, (lambda n: lambda *a, **k: tilt.calls.append((n, repr(a))))(name))
    return m


#: Extensions the checker knows: load(ext, symbol) -> the Tilt stub method that emulates it.
EXTENSIONS = {"ext://restart_process": ("docker_build_with_restart",)}


def check(
    tiltfile: str | Path,
    *,
    source: str | None = None,
    context: str = "kind-flask-celery",
    local: Callable[[str], str] | None = None,
) -> Result:
    """Evaluate `tiltfile` (or `source` in its place) against the stubs.

    Paths resolve against the Tiltfile's directory. `local` answers `local()` commands; by
    default every command answers a non-empty placeholder, as on a cluster where whatever
    the Tiltfile asks about exists.
    """
    path = Path(tiltfile).resolve()
    if source is None:
        source = path.read_text()
    tilt = Tilt(path.parent, context, local or (lambda cmd: f"<output of {cmd}>"))

    def load(module_id: str) -> sl.FrozenModule:
        if module_id not in EXTENSIONS:
            raise ValueError(f"load({module_id!r}): the checker has no stub for it")
        m = sl.Module()
        for symbol in EXTENSIONS[module_id]:
            m.add_callable(symbol, getattr(tilt, symbol))
        return m.freeze()

    try:
        ast = sl.parse(str(path), source, _dialect())
        sl.eval(_module(tilt), ast, GLOBALS, sl.FileLoader(load))
        resources = tilt.assemble()
    except sl.StarlarkError as exc:
        tilt.problems.append(str(exc))
        resources = {}
    return Result(
        problems=tilt.problems,
        calls=tilt.calls,
        warnings=tilt.warnings,
        images=tilt.images,
        objects=tilt.objects,
        resources=resources,
    )


if __name__ == "__main__":
    result = check(sys.argv[1] if len(sys.argv) > 1 else REPO / "Tiltfile")
    for w in result.warnings:
        print("warning:", w)
    for p in result.problems:
        print("ERROR:", p)
    if not result.problems:
        print(f"ok: {len(result.resources)} resources, images {sorted(result.images)}")
    sys.exit(1 if result.problems else 0)
