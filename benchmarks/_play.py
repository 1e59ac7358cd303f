"""The peer: the Ansible play that does the benchmark's rollout the way its users write it."""

from __future__ import annotations

import json
import os
import subprocess
import time

from benchmarks._stack import CONTAINER_LABELS, PYTHON, Stack, need
from devstack.haproxy import HAProxy

PLAY = """\
- name: Rolling update of web behind HAProxy
  hosts: boxes
  serial: 1
  gather_facts: false
  tasks:
    - name: Drain the box in HAProxy
      community.general.haproxy:
        state: drain
        host: "{{ inventory_hostname }}"
        backend: web
        socket: "{{ haproxy_socket }}"
        wait: true

    - name: Take it out of HAProxy once drained
      community.general.haproxy:
        state: disabled
        host: "{{ inventory_hostname }}"
        backend: web
        socket: "{{ haproxy_socket }}"
        drain: true
        wait: true

    - name: Run the new version
      community.docker.docker_container:
        name: "web-{{ inventory_hostname }}"
        image: "{{ image }}"
        state: started
        init: true
        published_ports: ["{{ bind_ip }}:18080:8080"]
        labels: "{{ container_labels }}"

    - name: Wait until it answers
      ansible.builtin.uri:
        url: "http://{{ bind_ip }}:18080/health"
      register: health
      until: health.status == 200
      retries: 30
      delay: 1

    - name: Put it back in HAProxy
      community.general.haproxy:
        state: enabled
        host: "{{ inventory_hostname }}"
        backend: web
        socket: "{{ haproxy_socket }}"
        wait: true
"""


def run_play(stack: Stack, hap: HAProxy, ips: dict[str, str], image: str) -> tuple[float, str]:
    inventory = stack.dir / "inventory.ini"
    inventory.write_text("[boxes]\n" + "".join(f"{b} bind_ip={ip}\n" for b, ip in ips.items())
                         + f"[boxes:vars]\nansible_connection=local\n"
                         f"ansible_python_interpreter={PYTHON}\n")
    play = stack.dir / "rolling.yml"
    play.write_text(PLAY)
    extra = json.dumps({"image": image, "haproxy_socket": hap.socket_path,
                        "container_labels": CONTAINER_LABELS})
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(stack.dir / "ansible-tmp"),
           "ANSIBLE_REMOTE_TMP": str(stack.dir / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_CONFIG": str(stack.dir / "none.cfg")}
    t0 = time.perf_counter()
    out = subprocess.run([need("ansible-playbook"), "-i", str(inventory), str(play),
                          "--extra-vars", extra], env=env, capture_output=True, text=True,
                         timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"the play failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}")
    return wall, out.stdout
