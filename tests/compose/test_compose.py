"""docker-compose 1.29 (Debian, on docker-py) drives caisd unchanged: a realistic busybox project."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.caisd import Caisd
from tests.compose.conftest import PROJECT, Compose
from tests.network.conftest import http_get
from tests.wait import wait_for

pytestmark = pytest.mark.peers

PORT = 18090

START_SH = """\
echo "web starting greeting=$GREETING"
echo "hello from $(hostname) greeting=$GREETING" > /www/index.html
exec httpd -f -p 80 -h /www
"""

COMPOSE_YML = """\
version: "3.8"
services:
  web:
    build: ./web
    image: cais-co-web:latest
    init: true
    environment:
      GREETING: hi
    ports:
      - "{port}:80"
    expose: ["9000"]
    volumes:
      - state:/state
      - ./data:/data:ro
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost/"]
      interval: 1s
      timeout: 2s
      retries: 3
  client:
    image: busybox
    init: true
    command: sleep 3600
    environment:
      - ROLE=client
      - PATH=/bin:/usr/bin
    depends_on:
      - web
volumes:
  state:
"""


def _write(root: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)



def _inspect(d: Caisd, name: str) -> dict:
    return json.loads(d.docker("inspect", name).stdout)[0]


def _wait_healthy(d: Caisd, name: str) -> None:
    deadline = time.monotonic() + 60
    while (status := _inspect(d, name)["State"].get("Health", {}).get("Status")) != "healthy":
        assert status in ("starting", None) and time.monotonic() < deadline, _inspect(d, name)["State"]
        time.sleep(0.2)


def _project_objects(d: Caisd) -> tuple[list[str], list[str], list[str]]:
    label = f"label=com.docker.compose.project={PROJECT}"
    return (d.docker("ps", "-aq", "--filter", label).stdout.decode().split(),
            d.docker("volume", "ls", "-q", "--filter", label).stdout.decode().split(),
            d.docker("network", "ls", "-q", "--filter", label).stdout.decode().split())


@pytest.mark.timeout(300)
def test_project_lifecycle(d: Caisd, project_dir: str) -> None:
    _write(project_dir, {"docker-compose.yml": COMPOSE_YML.format(port=PORT), "web/start.sh": START_SH,
                         "web/Dockerfile": 'FROM busybox\nRUN mkdir /www\nCOPY start.sh /\nCMD ["sh", "/start.sh"]\n',
                         "data/host.txt": "from the host\n"})
    dc = Compose(d, project_dir)
    try:
        # config: the file as compose resolved it
        assert dc("config", "--services").split() == ["web", "client"]
        config = dc("config")
        assert f"{project_dir}/data:/data:ro" in config and "GREETING: hi" in config

        # up -d: the image built through the docker CLI (compose's default), network, volume, two services
        since = str(time.time())
        up = dc.run("up", "-d")
        assert "Successfully tagged cais-co-web:latest" in up.stdout, up.stdout + up.stderr
        for made in (f'Creating network "{PROJECT}_default"', f'Creating volume "{PROJECT}_state"',
                     f"Creating {PROJECT}_web_1", f"Creating {PROJECT}_client_1"):
            assert made in up.stderr, up.stderr
        # depends_on: web started before client was created
        events = d.docker("events", "--since", since, "--until", str(time.time()), "--filter", "type=container",
                          "--format", "{{.Actor.Attributes.name}} {{.Action}}").stdout.decode().splitlines()
        assert events.index(f"{PROJECT}_web_1 start") < events.index(f"{PROJECT}_client_1 create"), events
        web = _inspect(d, f"{PROJECT}_web_1")
        # dockerd's shape although docker-py sent only some fields
        host_config = web["HostConfig"]
        assert host_config["LogConfig"]["Type"] == "json-file" and host_config["Privileged"] is False
        assert host_config["Init"] is True and host_config["Memory"] == 0 and host_config["CapAdd"] is None
        labels = web["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == PROJECT and labels["com.docker.compose.service"] == "web"
        assert sorted(web["NetworkSettings"]["Networks"][f"{PROJECT}_default"]["Aliases"]) == sorted(
            ["web", web["Id"][:12]])

        # healthcheck, ps
        _wait_healthy(d, f"{PROJECT}_web_1")
        ps = dc("ps")
        assert f"{PROJECT}_web_1" in ps and "Up (healthy)" in ps and f"0.0.0.0:{PORT}->80/tcp" in ps, ps
        assert "9000/tcp" in ps and _inspect(d, f"{PROJECT}_web_1")["NetworkSettings"]["Ports"]["9000/tcp"] is None
        assert len(dc("ps", "-q").split()) == 2 and dc("ps", "--services").split() == ["web", "client"]

        # the published port, from the sandbox host; environment; the service name over the embedded DNS
        hostname = web["Config"]["Hostname"]
        assert http_get(f"http://127.0.0.1:{PORT}/") == f"hello from {hostname} greeting=hi\n"
        assert dc("port", "web", "80").strip() == f"0.0.0.0:{PORT}"
        assert dc("exec", "-T", "client", "wget", "-qO-", "http://web/") == f"hello from {hostname} greeting=hi\n"
        config_env = _inspect(d, f"{PROJECT}_client_1")["Config"]["Env"]
        assert [e for e in config_env if e.startswith("PATH=")] == ["PATH=/bin:/usr/bin"], config_env
        env = dc("exec", "-T", "client", "env").splitlines()
        assert "ROLE=client" in env and [e for e in env if e.startswith("PATH=")] == ["PATH=/bin:/usr/bin"] and f"HOSTNAME={_inspect(d, f'{PROJECT}_client_1')['Config']['Hostname']}" in env

        # the named volume and the read-only bind mount
        dc("exec", "-T", "web", "sh", "-c", "echo kept > /state/f")
        assert dc("exec", "-T", "web", "cat", "/data/host.txt") == "from the host\n"
        denied = dc.run("exec", "-T", "web", "touch", "/data/x", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stdout + denied.stderr
        mounts = {m["Destination"]: m for m in web["Mounts"]}
        assert mounts["/state"]["Type"] == "volume" and mounts["/state"]["Name"] == f"{PROJECT}_state"
        assert mounts["/data"]["Type"] == "bind" and mounts["/data"]["RW"] is False

        # logs, exec -T exit codes, run --rm
        assert "web starting greeting=hi" in dc("logs", "--no-color", "web")
        assert dc.run("exec", "-T", "client", "sh", "-c", "exit 7", check=False).returncode == 7
        # compose's default exec has a TTY (dockerpty): through script(1)'s pty
        command = " ".join(dc.argv("exec", "client", "sh", "-c", "'tty; echo $TERM; exit 5'"))
        tty = subprocess.run(["script", "-eqc", command, "/dev/null"], cwd=project_dir, env=dc.env(),
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert tty.returncode == 5 and "/dev/pts/0" in tty.stdout and "xterm" in tty.stdout, tty
        run = dc.run("run", "--rm", "-T", "-e", "EXTRA=1", "client", "sh", "-c", "echo $EXTRA; wget -qO- http://web/")
        assert run.stdout == f"1\nhello from {hostname} greeting=hi\n", run.stderr
        assert dc.run("run", "--rm", "-T", "client", "sh", "-c", "exit 3", check=False).returncode == 3
        assert len(_project_objects(d)[0]) == 2  # the one-off containers are gone

        # restart
        started = web["State"]["StartedAt"]
        dc("restart", "-t", "1", "web")
        assert _inspect(d, f"{PROJECT}_web_1")["State"]["StartedAt"] != started
        assert http_get(f"http://127.0.0.1:{PORT}/").startswith("hello from")

        # scale: three clients, all behind the service name; then back to one
        dc("up", "-d", "--scale", "client=3")
        assert len(dc("ps", "-q", "client").split()) == 3
        lookup = dc("exec", "-T", "web", "nslookup", "client")
        assert lookup.count("Address: 172.") == 3, lookup
        dc("scale", "client=1")
        assert dc("ps", "--services").split() == ["web", "client"] and len(dc("ps", "-q", "client").split()) == 1

        # up again after a config change: web recreated (the docker-py build path this time), the volume kept
        _write(project_dir, {"docker-compose.yml": COMPOSE_YML.format(port=PORT).replace("GREETING: hi",
                                                                                        "GREETING: changed")})
        dc("build", env={"COMPOSE_DOCKER_CLI_BUILD": "0"})
        up = dc.run("up", "-d")
        assert f"Recreating {PROJECT}_web_1" in up.stderr and f"{PROJECT}_client_1 is up-to-date" in up.stderr, (
            up.stderr)
        web2 = _inspect(d, f"{PROJECT}_web_1")
        assert web2["Id"] != web["Id"]
        assert http_get(f"http://127.0.0.1:{PORT}/") == f"hello from {web2['Config']['Hostname']} greeting=changed\n"
        assert dc("exec", "-T", "web", "cat", "/state/f") == "kept\n"

        # down -v --remove-orphans from a file without client: client is an orphan, and goes too
        _write(project_dir, {"only-web.yml": COMPOSE_YML.format(port=PORT).split("  client:")[0] +
                             "volumes:\n  state:\n"})
        down = dc.run("-f", "only-web.yml", "down", "-v", "--remove-orphans", "-t", "1")
        assert f'Removing orphan container "{PROJECT}_client_1"' in down.stderr, down.stderr
        assert f"Removing volume {PROJECT}_state" in down.stderr, down.stderr
        assert _project_objects(d) == ([], [], [])

        # and up again from nothing: a fresh volume, the port served again
        dc("up", "-d")
        _wait_healthy(d, f"{PROJECT}_web_1")
        assert http_get(f"http://127.0.0.1:{PORT}/").endswith("greeting=changed\n")
        assert dc.run("exec", "-T", "web", "cat", "/state/f", check=False).returncode != 0
        dc("down", "-v", "-t", "1")
        assert _project_objects(d) == ([], [], [])
    finally:
        dc.down()
        d.docker("rmi", "-f", "cais-co-web:latest", check=False)


NETWORKS_YML = """\
version: "2.4"
services:
  db:
    image: busybox
    init: true
    command: sh -c 'echo db-ready; exec sleep 3600'
    healthcheck:
      test: ["CMD-SHELL", "test -e /proc/1"]
      interval: 1s
    networks:
      back:
        aliases: [database]
        ipv4_address: 10.77.0.50
    tmpfs: /scratch
    volumes: [/shared]
  app:
    image: busybox
    init: true
    command: sleep 3600
    depends_on:
      db:
        condition: service_healthy
    networks: [back, front]
    links: ["db:dblink"]
    extra_hosts: ["ext.cais.test:10.1.2.3"]
    user: "1000:1000"
    working_dir: /tmp
    restart: always
  side:
    image: busybox
    init: true
    network_mode: "service:db"
    volumes_from: [db]
    command: sleep 3600
  once:
    image: busybox
    command: sh -c 'echo once-ran; exit 3'
    networks: [front]
networks:
  front: {}
  back:
    ipam:
      config:
        - subnet: 10.77.0.0/24
"""


@pytest.mark.timeout(300)
def test_networks_links_and_dependencies(d: Caisd, project_dir: str) -> None:
    _write(project_dir, {"docker-compose.yml": NETWORKS_YML})
    dc = Compose(d, project_dir)
    try:
        since = str(time.time())
        dc("up", "-d")
        # service_healthy: db was healthy before app was started
        events = d.docker("events", "--since", since, "--until", str(time.time()), "--filter", "type=container",
                          "--format", "{{.Actor.Attributes.name}} {{.Action}}").stdout.decode().splitlines()
        assert events.index(f"{PROJECT}_db_1 health_status: healthy") < events.index(f"{PROJECT}_app_1 start")
        sh = lambda service, script: dc("exec", "-T", service, "sh", "-c", script)  # noqa: E731

        # network aliases, a fixed address, a link alias (seen by app only), two networks
        names = ("db", "database", "dblink", f"{PROJECT}_db_1")
        found = sh("app", " ; ".join(f"nslookup {n} | grep -q 'Address: 10.77.0.50' && echo {n}" for n in names))
        assert found.split() == list(names), found
        assert "Address: 10.77.0.50" not in dc.run("exec", "-T", "db", "nslookup", "dblink", check=False).stdout
        app = _inspect(d, f"{PROJECT}_app_1")
        assert set(app["NetworkSettings"]["Networks"]) == {f"{PROJECT}_back", f"{PROJECT}_front"}
        assert "dblink" in " ".join(app["NetworkSettings"]["Networks"][f"{PROJECT}_back"]["Links"])
        assert sh("app", "id -u; pwd; grep ext.cais.test /etc/hosts") == "1000\n/tmp\n10.1.2.3\text.cais.test\n"
        # network_mode service:, volumes_from, tmpfs
        assert "10.77.0.50" in sh("side", "ip -4 addr show eth0")
        assert sh("side", "hostname; cat /etc/hosts") == sh("db", "hostname; cat /etc/hosts")  # dockerd's too
        sh("db", "echo from-db > /shared/f")
        assert sh("side", "cat /shared/f") == "from-db\n"
        assert "tmpfs" in sh("db", "grep /scratch /proc/mounts")

        # exec_die once per exec, with its exit code
        since = str(time.time())
        assert dc.run("exec", "-T", "db", "sh", "-c", "exit 4", check=False).returncode == 4
        dies = d.docker("events", "--since", since, "--until", str(time.time() + 1), "--filter", "event=exec_die",
                        "--filter", f"container={PROJECT}_db_1", "--format", "{{json .Actor.Attributes}}")
        codes = [json.loads(line)["exitCode"] for line in dies.stdout.decode().splitlines()]
        assert "4" in codes and codes.count("4") == 1, codes

        # restart: always brings app back after its process dies; kill does not
        pid = _inspect(d, f"{PROJECT}_app_1")["State"]["Pid"]
        os.kill(pid, 9)
        wait_for(lambda: _inspect(d, f"{PROJECT}_app_1")["State"]["Pid"] not in (pid, 0), "app's restart")
        assert _inspect(d, f"{PROJECT}_app_1")["State"]["Running"]
        assert _inspect(d, f"{PROJECT}_app_1")["RestartCount"] >= 1
        dc("kill", "app")
        wait_for(lambda: not _inspect(d, f"{PROJECT}_app_1")["State"]["Running"], "app to die of the kill")
        time.sleep(1)
        assert not _inspect(d, f"{PROJECT}_app_1")["State"]["Running"]  # and not be restarted

        # pause, seen by `events --json`; top; a one-shot service in the foreground with its exit code
        events = dc.popen("events", "--json")
        seen: list[dict] = []
        reader = threading.Thread(target=lambda: seen.extend(json.loads(line) for line in events.stdout), daemon=True)
        reader.start()
        actions = lambda: [e["action"] for e in seen if e["service"] == "db" and e["type"] == "container"]  # noqa: E731
        try:
            def subscribed() -> bool:  # compose takes seconds to start: an exec's events say it listens
                d.docker("exec", f"{PROJECT}_db_1", "true")
                return bool(actions())

            wait_for(subscribed, "compose events to listen", interval=0.5)
            dc("pause", "db")
            assert "Paused" in dc("ps", "db")
            dc("unpause", "db")
            wait_for(lambda: "unpause" in actions(), "the unpause event")
        finally:
            events.terminate()
            events.wait(30)
            reader.join(30)
        assert actions().index("pause") < actions().index("unpause"), seen
        assert "sleep 3600" in dc("top", "db")
        done = dc.run("up", "--abort-on-container-exit", "--exit-code-from", "once", "once", check=False)
        assert done.returncode == 3 and "once-ran" in done.stdout, done.stdout + done.stderr
        dc("rm", "-fs", "once")
        assert "once" not in dc("ps", "--services", "--filter", "status=stopped").split()
        dc("down", "-v", "-t", "1")
        assert _project_objects(d) == ([], [], [])
    finally:
        dc.down()


def test_port_conflict_is_a_clear_error(d: Caisd, project_dir: str) -> None:
    _write(project_dir, {"docker-compose.yml": 'version: "3.8"\nservices:\n'
                         '  a:\n    image: busybox\n    command: sleep 60\n    ports: ["18091:80"]\n'
                         '  b:\n    image: busybox\n    command: sleep 60\n    ports: ["18091:80"]\n'})
    dc = Compose(d, project_dir)
    try:
        done = dc.run("up", "-d", "-t", "1", check=False)
        assert done.returncode != 0
        assert "Bind for 0.0.0.0:18091 failed: port is already allocated" in done.stderr, done.stderr
        assert "Host is already in use by another container" in done.stderr, done.stderr  # compose saw dockerd's words
        assert "Traceback" not in done.stderr
    finally:
        dc.down()
    assert _project_objects(d) == ([], [], [])


def test_pull_by_digest_and_bad_config_are_clear_errors(d: Caisd, project_dir: str) -> None:
    """compose pulls NAME@DIGEST as fromImage=NAME&tag=DIGEST (here from a registry on a closed
    loopback port: nothing leaves the sandbox); a bad service is refused in one line."""
    digest = "sha256:" + "0" * 64
    _write(project_dir, {"docker-compose.yml": f'version: "2.4"\nservices:\n'
                         f'  pinned:\n    image: 127.0.0.1:1/cais-co-missing@{digest}\n'
                         '  badcap:\n    image: busybox\n    cap_add: [NOPE]\n'})
    dc = Compose(d, project_dir)
    try:
        done = dc.run("up", "-d", "pinned", check=False)
        assert done.returncode != 0 and "invalid reference format" not in done.stderr, done.stderr
        assert "127.0.0.1:1" in done.stderr and "Traceback" not in done.stderr, done.stderr
        done = dc.run("up", "-d", "badcap", check=False)
        assert done.returncode != 0 and "unknown capability: 'NOPE'" in done.stderr, done.stderr
    finally:
        dc.down()
    assert _project_objects(d) == ([], [], [])


@pytest.mark.timeout(300)
def test_push_and_pull_through_a_registry(d: Caisd, project_dir: str) -> None:
    """`build` + `push`, `pull`, and `up` of a service pinned by digest, with cais's registry server
    on the sandbox's loopback."""
    root = tempfile.mkdtemp(prefix="cais-co-reg-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cais.registry.server", "--addr", f"127.0.0.1:{port}",
                               "--root", root, "--log-level", "error"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    image = f"127.0.0.1:{port}/cais-co/app:1"
    _write(project_dir, {"app/Dockerfile": "FROM busybox\nRUN echo pushed > /marker\n",
                         "docker-compose.yml": f'version: "3.8"\nservices:\n  app:\n    build: ./app\n'
                                               f'    image: {image}\n    command: cat /marker\n'})
    dc = Compose(d, project_dir)
    try:
        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, "the registry server")
        dc("build")
        pushed = dc.run("push")
        assert "Pushing app" in pushed.stderr, pushed.stderr
        digest = _inspect_image(d, image)["RepoDigests"][0].partition("@")[2]
        d.docker("rmi", image)
        pulled = dc.run("pull")
        assert "Pulling app" in pulled.stderr and _inspect_image(d, image)["RepoDigests"], pulled.stderr
        d.docker("rmi", image)
        pinned = f"127.0.0.1:{port}/cais-co/app@{digest}"
        _write(project_dir, {"docker-compose.yml": f'version: "3.8"\nservices:\n  app:\n    image: {pinned}\n'
                                                   '    command: cat /marker\n'})
        dc("up", "-d")  # compose pulls it: fromImage=NAME&tag=DIGEST
        wait_for(lambda: "pushed" in dc("logs", "--no-color", "app"), "the pinned service's output")
    finally:
        dc.down()
        server.terminate()
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)
        for ref in (image, f"127.0.0.1:{port}/cais-co/app"):
            d.docker("rmi", "-f", ref, check=False)


def _inspect_image(d: Caisd, ref: str) -> dict:
    return json.loads(d.docker("image", "inspect", ref).stdout)[0]
