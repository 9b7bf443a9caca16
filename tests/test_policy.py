"""The run policy, judged on the libpod create body (pure), and through a real daemon."""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from podman_rpc.daemon.config import load_config
from podman_rpc.daemon.guard.policy import (
    PolicyConfig,
    check_run_spec,
    policy_from_mapping,
    size_setting,
)
from podman_rpc.protocol.errors import PolicyDenied

SAFE: dict[str, Any] = {
    "image": "localhost/busybox:latest",
    "name": "prpc-policy",
    "command": ["echo", "hi"],
    "env": {"A": "1"},
    "labels": {"io.podman-rpc.owner": "podman-rpc"},
    "remove": False,
    "netns": {"nsmode": "none"},
    "no_new_privileges": True,
    "cap_drop": ["ALL"],
    "userns": {"nsmode": "auto"},
    "idmappings": {"AutoUserNs": True, "AutoUserNsOpts": {"Size": 65536}},
    "resource_limits": {"memory": {"limit": 20 << 20, "swap": 20 << 20},
                        "cpu": {"quota": 50000, "period": 100000},
                        "pids": {"limit": 64}},
}


def body(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(SAFE)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def bind(source: str, destination: str, *options: str) -> dict[str, Any]:
    """A bind mount as create_body writes it: nosuid,nodev added to the caller's options."""
    return {"type": "bind", "source": source, "destination": destination,
            "options": [*options, "nosuid", "nodev"]}


def limits(memory: Any = 20 << 20, quota: Any = 50000, pids: Any = 64) -> dict[str, Any]:
    return {"memory": {"limit": memory}, "cpu": {"quota": quota, "period": 100000},
            "pids": {"limit": pids}}


DEFAULT_POLICY = PolicyConfig()


def denied_rule(spec: dict[str, Any], policy: PolicyConfig = DEFAULT_POLICY) -> str:
    with pytest.raises(PolicyDenied) as caught:
        check_run_spec(spec, policy)
    error = caught.value
    assert error.code == -32003 and error.data["kind"] == "PolicyDenied"
    assert error.data["rule"] in error.message
    return error.data["rule"]


def test_the_safe_default_passes() -> None:
    check_run_spec(body(), PolicyConfig())


# (the change to the safe body, the rule that must deny it, the policy that allows it)
CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("privileged", {"privileged": True}, "privileged", {"allow_privileged": True}),
    ("cap_add", {"cap_add": ["SYS_ADMIN"]}, "capabilities", {"capabilities": ("SYS_ADMIN",)}),
    ("cap_add prefixed", {"cap_add": ["cap_net_raw"]}, "capabilities", {"capabilities": ("ALL",)}),
    ("podman's default caps", {"cap_drop": ...}, "capabilities", {"capabilities": ("ALL",)}),
    ("some caps dropped", {"cap_drop": ["NET_RAW"]}, "capabilities", {"capabilities": ("ALL",)}),
    ("new privileges", {"no_new_privileges": ...}, "no_new_privileges", None),
    ("new privileges false", {"no_new_privileges": False}, "no_new_privileges", None),
    ("host network", {"netns": {"nsmode": "host"}}, "host_network", {"allow_host_network": True}),
    ("netns by path", {"netns": {"nsmode": "path", "value": "/proc/1/ns/net"}}, "host_network",
     {"allow_host_network": True}),
    ("host pid", {"pidns": {"nsmode": "host"}}, "host_pid", {"allow_host_pid": True}),
    ("pid of a container", {"pidns": {"nsmode": "container:abc"}}, "host_pid",
     {"allow_host_pid": True}),
    ("host ipc", {"ipcns": {"nsmode": "host"}}, "host_ipc", {"allow_host_ipc": True}),
    ("host userns", {"userns": {"nsmode": "host"}}, "userns", {"userns": "host"}),
    ("no userns is host's", {"userns": ...}, "userns", {"userns": "host"}),
    ("private userns is host's", {"userns": {"nsmode": "private"}}, "userns", {"userns": "host"}),
    ("auto with a mapping", {"userns": {"nsmode": "auto", "value": "uidmapping=0:0:1"}},
     "userns", {"userns": "host"}),
    ("auto without AutoUserNs maps 1:1", {"idmappings": ...}, "userns", {"userns": "host"}),
    ("explicit id maps", {"idmappings": {"AutoUserNs": True, "UIDMap": [
        {"container_id": 0, "host_id": 0, "size": 1}]}}, "userns", None),
    ("auto options", {"idmappings": {"AutoUserNs": True, "AutoUserNsOpts": {
        "AdditionalUIDMappings": [{"container_id": 0, "host_id": 0, "size": 1}]}}}, "userns", None),
    ("auto passwd file", {"idmappings": {"AutoUserNs": True, "AutoUserNsOpts": {
        "Size": 10, "PasswdFile": "/etc/passwd"}}}, "userns", None),
    ("auto size absurd", {"idmappings": {"AutoUserNs": True, "AutoUserNsOpts": {
        "Size": 1 << 31}}}, "userns", None),
    ("auto size not a number", {"idmappings": {"AutoUserNs": True, "AutoUserNsOpts": {
        "Size": "big"}}}, "userns", None),
    ("host uts", {"utsns": {"nsmode": "host"}}, "host_uts", {"allow_host_uts": True}),
    ("devices", {"devices": [{"path": "/dev/sda"}]}, "devices", {"allow_devices": ("/dev/sda",)}),
    ("bind outside roots", {"mounts": [bind("/srv/data", "/x")]},
     "mount", {"mount_roots": ("/srv",)}),
    ("etc holds podman's config", {"mounts": [bind("/etc", "/x")]}, "mount_storage",
     {"mount_roots": ("/etc",), "allow_storage_mounts": True}),
    ("relative bind", {"mounts": [bind("etc", "/x")]},
     "mount", None),
    ("socket by name", {"mounts": [bind("/srv/app/agent.sock", "/s")]}, "mount_socket",
     {"mount_roots": ("/srv",), "allow_socket_mounts": True}),
    ("podman storage", {"mounts": [bind("/var/lib/containers/storage", "/s")]}, "mount_storage",
     {"mount_roots": ("/var/lib",), "allow_storage_mounts": True}),
    ("parent of podman's socket", {"mounts": [bind("/run", "/r")]}, "mount_storage",
     {"mount_roots": ("/run",), "allow_storage_mounts": True}),
    ("the root", {"mounts": [bind("/", "/h")]},
     "mount_storage", None),
    ("named volume", {"volumes": [{"Name": "data", "Dest": "/data"}]}, "volume",
     {"allow_named_volumes": True}),
    ("volume mount", {"mounts": [{"type": "volume", "source": "data", "destination": "/d"}]},
     "volume", {"allow_named_volumes": True}),
    ("ports", {"portmappings": [{"container_port": 80, "host_port": 8080}]}, "ports",
     {"allow_ports": True}),
    ("privileged host port", {"portmappings": [{"container_port": 80, "host_port": 80}]},
     "ports", {"allow_ports": True, "port_range": (1, 65535)}),
    ("publish all", {"publish_image_ports": True}, "ports", {"allow_ports": True}),
    ("bridge", {"netns": {"nsmode": "bridge"}}, "network", {"allow_networks": ("bridge",)}),
    ("no netns means bridge", {"netns": ...}, "network", {"allow_networks": ("bridge",)}),
    ("named network", {"netns": {"nsmode": "bridge"}, "networks": {"backend": {}}}, "network",
     {"allow_networks": ("bridge", "backend")}),
    ("memory above", {"resource_limits": limits(memory=2 << 30)}, "memory",
     {"max_memory": 4 << 30}),
    ("memory missing", {"resource_limits": limits(memory=None)}, "memory", {"max_memory": None}),
    ("unlimited swap", {"resource_limits": {**limits(), "memory": {"limit": 1 << 20, "swap": -1}}},
     "memory_swap", {"max_memory_swap": None}),
    ("swap above", {"resource_limits": {**limits(), "memory": {"limit": 1 << 20,
                                                              "swap": 4 << 30}}},
     "memory_swap", {"max_memory_swap": 8 << 30}),
    ("cpus above", {"resource_limits": limits(quota=400000)}, "cpus", {"max_cpus": 4.0}),
    ("cpus missing", {"resource_limits": limits(quota=None)}, "cpus", {"max_cpus": None}),
    ("pids missing", {"resource_limits": limits(pids=None)}, "pids",
     {"require_pids_limit": False}),
    ("pids above", {"resource_limits": limits(pids=100000)}, "pids", {"max_pids": None}),
    ("image pattern", {"image": "docker.io/library/alpine"}, "image",
     {"images": ("docker.io/library/*",)}),
    ("unknown field", {"rootfs": "/"}, "field", {"allow_fields": ("rootfs",)}),
    ("volumes_from", {"volumes_from": ["other"]}, "field", {"allow_fields": ("volumes_from",)}),
    ("cgroup device rules", {"resource_limits": {**limits(), "devices": [{"allow": True}]}},
     "field", None),
    ("host log path", {"log_configuration": {"driver": "k8s-file", "path": "/etc/cron.d/x"}},
     "log_path", None),
]
_RESTRICTED_IMAGES = {"image pattern"}


@pytest.mark.parametrize("name, change, rule, allow", CASES, ids=[c[0] for c in CASES])
def test_each_rule_denies_and_its_setting_allows(name: str, change: dict[str, Any], rule: str,
                                                 allow: dict[str, Any] | None) -> None:
    policy = PolicyConfig(images=("localhost/*",)) if name in _RESTRICTED_IMAGES else PolicyConfig()
    assert denied_rule(body(**change), policy) == rule
    if allow is not None:
        check_run_spec(body(**change), dataclasses.replace(policy, **allow))


def test_socket_file_without_the_suffix_is_still_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "innocent"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    try:
        spec = body(mounts=[bind(str(path), "/x")])
        assert denied_rule(spec, PolicyConfig(mount_roots=(str(tmp_path),))) == "mount_socket"
    finally:
        listener.close()


def test_symlink_into_storage_is_followed(tmp_path: Path) -> None:
    link = tmp_path / "looks-fine"
    link.symlink_to("/var/lib/containers")
    spec = body(mounts=[bind(str(link), "/x")])
    assert denied_rule(spec, PolicyConfig(mount_roots=(str(tmp_path),))) == "mount_storage"


def test_bind_inside_an_allowed_root_passes(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    spec = body(mounts=[bind(str(tmp_path / "data"), "/d")])
    check_run_spec(spec, PolicyConfig(mount_roots=(str(tmp_path),)))
    sibling = str(tmp_path) + "-other"
    spec = body(mounts=[bind(sibling, "/d")])
    assert denied_rule(spec, PolicyConfig(mount_roots=(str(tmp_path),))) == "mount"


def test_cap_drop_and_tmpfs_need_no_permission() -> None:
    check_run_spec(body(cap_drop=["ALL"], mounts=[{"type": "tmpfs", "destination": "/t"}]),
                   PolicyConfig())


# --- mount options: an allowlist; a host path is always nosuid,nodev ---------------------

ROOTED = PolicyConfig(mount_roots=("/srv",), allow_named_volumes=True)


@pytest.mark.parametrize("option", ["U", "idmap", "idmap=uids=0-1-10", "suid", "dev", "exec",
                                    "O", "upperdir=/x", "bind", "u", "RO", " ro", "size=1m"])
def test_mount_options_outside_the_allowlist_are_denied(option: str) -> None:
    for spec in (body(mounts=[bind("/srv/ok", "/j", option)]),
                 body(volumes=[{"Name": "/srv/ok", "Dest": "/j",
                                "Options": [option, "nosuid", "nodev"]}])):
        with pytest.raises(PolicyDenied) as caught:
            check_run_spec(spec, ROOTED)
        assert caught.value.data["rule"] == "mount_option"
        assert caught.value.data["option"] == option


@pytest.mark.parametrize("option", ["ro", "rw", "z", "Z", "noexec", "shared", "rshared",
                                    "private", "rprivate", "slave", "rslave", "unbindable",
                                    "runbindable"])
def test_mount_options_in_the_allowlist_pass(option: str) -> None:
    check_run_spec(body(mounts=[bind("/srv/ok", "/j", option)]), ROOTED)
    check_run_spec(body(volumes=[{"Name": "/srv/ok", "Dest": "/j",
                                  "Options": [option, "nosuid", "nodev"]}]), ROOTED)


def test_host_paths_must_be_nosuid_and_nodev() -> None:
    for missing in ("nosuid", "nodev"):
        kept = [o for o in ("nosuid", "nodev") if o != missing]
        spec = body(mounts=[{"type": "bind", "source": "/srv/ok", "destination": "/j",
                             "options": kept}])
        with pytest.raises(PolicyDenied) as caught:
            check_run_spec(spec, ROOTED)
        assert caught.value.data == {**caught.value.data, "rule": "mount_option",
                                     "option": missing}
    # a named volume and a tmpfs are not host paths: size= and mode= are theirs
    check_run_spec(body(volumes=[{"Name": "data", "Dest": "/d", "Options": ["size=10m"]}],
                        mounts=[{"type": "tmpfs", "destination": "/t",
                                 "options": ["size=1m", "mode=1777"]}]), ROOTED)
    assert denied_rule(body(mounts=[{"type": "tmpfs", "destination": "/t",
                                     "options": ["suid"]}]), ROOTED) == "mount_option"
    assert denied_rule(body(mounts=[{"type": "bind", "source": "/srv/ok", "destination": "/j",
                                     "options": "nosuid,nodev"}]), ROOTED) == "mount_option"


def test_idmapped_mount_keys_are_denied() -> None:
    mapped = {**bind("/srv/ok", "/j"), "uidMappings": [{"containerID": 0, "hostID": 0,
                                                        "size": 1}]}
    assert denied_rule(body(mounts=[mapped]), ROOTED) == "field"
    assert denied_rule(body(idmappings={"UIDMap": [{"container_id": 0, "host_id": 0}]}),
                       ROOTED) == "userns"


def test_policy_capabilities_are_the_only_ones() -> None:
    granted = PolicyConfig(capabilities=("NET_BIND_SERVICE",))
    check_run_spec(body(cap_add=["CAP_NET_BIND_SERVICE"]), granted)
    assert denied_rule(body(cap_add=["NET_BIND_SERVICE", "SYS_ADMIN"]), granted) == "capabilities"
    assert denied_rule(body(cap_drop=["NET_RAW"]), granted) == "capabilities"


def test_userns_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="userns"):
        policy_from_mapping({"userns": "keep-id"})
    assert policy_from_mapping({"userns": "host", "capabilities": ["CHOWN"]}) == PolicyConfig(
        userns="host", capabilities=("CHOWN",))
    with pytest.raises(ValueError, match="allow_cap_add"):  # one concept: capabilities
        policy_from_mapping({"allow_cap_add": ["CHOWN"]})


def test_keys_match_case_insensitively_as_podman_decodes_them() -> None:
    assert denied_rule(body(Privileged=True)) == "privileged"
    assert denied_rule(body(netns={"NsMode": "host"})) == "host_network"
    assert denied_rule(body(netns={"nsmode": "bridge"}, Networks={"x": {}}),
                       PolicyConfig(allow_networks=("bridge",))) == "network"
    big = {"Memory": {"Limit": 8 << 30}, "CPU": {"Quota": 50000, "Period": 100000},
           "Pids": {"Limit": 64}}
    assert denied_rule(body(resource_limits=big)) == "memory"
    assert denied_rule(body(mounts=[{"Type": "bind", "Source": "/", "Destination": "/h"}])) \
        == "mount_storage"
    assert denied_rule({**body(), "privileged": False, "PRIVILEGED": True}) == "field"


def test_not_an_object_and_missing_image() -> None:
    assert denied_rule([], PolicyConfig()) == "field"  # type: ignore[arg-type]
    assert denied_rule(body(image=...), PolicyConfig()) == "image"


def test_sizes_and_config_table() -> None:
    assert size_setting("max_memory", "512m") == 512 << 20
    assert size_setting("max_memory", "1.5g") == 3 << 29
    assert size_setting("max_memory", 1234) == 1234 and size_setting("max_memory", None) is None
    with pytest.raises(ValueError, match=r"\[daemon.policy\] max_memory: not a size like"):
        size_setting("max_memory", "lots")
    assert policy_from_mapping({"max_memory": "1.5g", "max_build_context_bytes": "2GiB"}) \
        == PolicyConfig(max_memory=3 << 29, max_build_context_bytes=2 << 30)
    with pytest.raises(ValueError, match="unknown"):
        policy_from_mapping({"allow_everything": True})
    with pytest.raises(ValueError, match="true or false"):
        policy_from_mapping({"allow_privileged": "yes"})
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write('[daemon]\nlog_level = "debug"\n[daemon.policy]\nmax_memory = "256m"\n'
                 'allow_networks = ["none", "bridge"]\nport_range = [2000, 3000]\n')
    try:
        config = load_config(fh.name)
    finally:
        os.unlink(fh.name)
    assert config.policy.max_memory == 256 << 20
    assert config.policy.allow_networks == ("none", "bridge")
    assert config.policy.port_range == (2000, 3000)
    assert config.log_level == "debug" and load_config().policy == PolicyConfig()


# --- through a real daemon: denied runs create nothing ------------------------------------

def _names_in_podman(prefix: str) -> list[str]:
    from tests.rig.podman import podman

    out = podman("ps", "-a", "--filter", f"name={prefix}", "--format", "{{.Names}}").stdout
    return out.split()


LIVE = [
    ("ports", {"ports": ["18080:80"]}),
    ("host_network", {"network_mode": "host"}),
    ("network", {"network_mode": "bridge"}),
    ("memory", {"memory": "2g", "memory_swap": "2g"}),
    ("cpus", {"cpus": 3.5}),
    ("pids", {"pids_limit": 100000}),
    ("memory_swap", {"memory": "20m", "memory_swap": "-1"}),
    ("mount", {"volumes": ["/srv:/hostsrv"]}),
    ("mount_socket", {"volumes": ["/tmp/prpc-policy.sock:/s"]}),
    ("mount_storage", {"volumes": ["/var/lib/containers:/storage"]}),
    ("volume", {"volumes": ["prpcdata:/data"]}),
    ("image", {"image": "docker.io/library/alpine:latest"}),
]


@pytest.mark.podman
def test_denied_runs_through_the_daemon_create_nothing(make_daemon: Callable[..., Any],
                                                        busybox: str) -> None:
    daemon = make_daemon('[daemon.policy]\nimages = ["localhost/*"]\n')
    prefix = f"prpc-deny-{os.getpid()}"
    with daemon.connect() as conn:
        ran = conn.request("run", {"image": busybox, "command": ["echo", "allowed"],
                                   "name": f"{prefix}-ok", "auto_remove": True})
        if "error" in ran and ran["error"]["data"]["kind"] == "MethodNotFound":
            pytest.fail("the run method is not implemented yet")
        assert ran.get("result", {}).get("exit_code") == 0, ran
        for rule, params in LIVE:
            reply = conn.request("run", {"image": busybox, "command": ["true"],
                                         "name": f"{prefix}-{rule}", **params})
            assert "error" in reply, (rule, reply)
            assert reply["error"]["data"]["kind"] == "PolicyDenied", (rule, reply)
            assert reply["error"]["data"]["rule"] == rule, (rule, reply)
        assert conn.call("status")["draining"] is False
    assert _names_in_podman(prefix) == []
