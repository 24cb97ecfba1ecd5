"""Ansible module json_record: a root-only JSON record on the managed host (read or write)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: json_record
short_description: Read or write a small root-only JSON record
description:
  - The snapshot-stream roles keep what they did on a host in small JSON files (the Tailscale
    join settings, the `tailscale serve` handlers they added). This module reads such a record,
    or writes it as pretty-printed JSON, mode 0600, in a directory of mode 0700, owned by the
    user the module runs as (root with become).
  - A record that is missing reads as its O(default).
  - Writing changes nothing when the file already holds the same data; the file is replaced
    atomically. Check mode and diff mode are supported.
options:
  path:
    description: The record's file.
    type: path
    required: true
  content:
    description: Data to write. Omitted, the record is only read.
    type: raw
  default:
    description: What a missing record reads as.
    type: raw
    default: {}
author: snapshot-stream contributors
"""

EXAMPLES = r"""
- name: Read the record
  json_record:
    path: /var/lib/example/record.json
  register: example_record

- name: Write the record
  json_record:
    path: /var/lib/example/record.json
    content: {format: 1, items: [1, 2]}
"""

RETURN = r"""
exists:
  description: Whether the file existed before the task.
  type: bool
  returned: always
content:
  description: The record (after the task), or O(default) when there is none.
  type: raw
  returned: always
"""


def dump(data: Any) -> str:
    # What Ansible's to_nice_json writes, so records written by earlier versions compare equal.
    return json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False) + "\n"


def read(path: str) -> tuple[bool, str | None]:
    """(exists, text); text is None for a missing file."""
    try:
        with open(path, encoding="utf-8") as f:
            return True, f.read()
    except FileNotFoundError:
        return False, None


def write(path: str, text: str) -> None:
    """Replaces the file atomically, 0600 in a 0700 directory."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".json_record.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "content": {"type": "raw"},
            "default": {"type": "raw", "default": {}},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    exists, text = read(path)
    try:
        current = json.loads(text) if text is not None else module.params["default"]
    except ValueError as exc:
        if module.params["content"] is None:
            module.fail_json(msg=f"{path} is not JSON ({exc}): fix or remove it")
        current = None
    wanted = module.params["content"]
    if wanted is None:
        module.exit_json(changed=False, exists=exists, content=current)
    new_text = dump(wanted)
    mode = os.stat(path).st_mode & 0o777 if exists else None
    changed = new_text != text or mode != 0o600
    result: dict[str, Any] = {"changed": changed, "exists": exists, "content": wanted}
    if module._diff and new_text != text:
        result["diff"] = {
            "before_header": path,
            "before": text or "",
            "after_header": path,
            "after": new_text,
        }
    if changed and not module.check_mode:
        try:
            write(path, new_text)
        except OSError as exc:
            module.fail_json(msg=f"cannot write {path}: {exc.strerror}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
