"""Helpers of the deployment checks: Compose interpolation, a Dockerfile reader, the CLI."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from typer.testing import CliRunner

from ganserve.cli.main import app
from ganserve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
SMOKE_OVERRIDE = ROOT / "deploy" / "compose.smoke.yml"
SMOKE_SCRIPT = ROOT / "deploy" / "smoke.sh"
SMOKE_HELPER = ROOT / "deploy" / "smoke" / "smoke.py"
SMOKE_DOCKERFILES = sorted((ROOT / "deploy" / "smoke").glob("*.Dockerfile"))
CI_SCRIPT = ROOT / ".ci" / "run"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "compose-spec.json"

# Variables a ganserve container may be given that are not ganserve settings: read by the
# CUDA runtime and the NVIDIA container toolkit, not by ganserve.
NON_SETTING_ENV = {"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}

# --- settings ------------------------------------------------------------------------------


def setting_env_names() -> set[str]:
    """Every environment variable `Settings` reads: GANSERVE_<FIELD> or the field's aliases."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


# --- Compose interpolation -------------------------------------------------------------------

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, ${VAR:+alt},
# ${VAR+alt}, $VAR, and $$ (a literal $). Nested substitutions are not used here.
_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}$]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Reference:
    """One `${...}` in the Compose file."""

    name: str
    op: str | None  # ":-", "-", ":?", "?", ":+", "+" or None
    arg: str  # the default, the error message or the alternative
    where: str  # dotted path of the value that holds it


class InterpolationError(ValueError):
    pass


def interpolate(
    value: Any, variables: dict[str, str], where: str = "", found: list[Reference] | None = None
) -> Any:
    """`value` with every string interpolated as Compose would, given `variables`.

    Unset variables take their `:-` default; an unset one with `:?` raises, as Compose refuses
    to start. Each reference is appended to `found` (with where it was).
    """
    if isinstance(value, dict):
        return {
            key: interpolate(item, variables, f"{where}.{key}".lstrip("."), found)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate(item, variables, f"{where}[{index}]", found)
            for index, item in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        if found is not None:
            found.append(Reference(name, op, arg, where))
        current = variables.get(name)
        empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if empty else str(current)
        if op in (":?", "?"):
            if empty:
                raise InterpolationError(f"{where}: {name} is required: {arg}")
            return str(current)
        if op in (":+", "+"):
            return "" if empty else arg
        return current or ""

    if "$" in _REFERENCE.sub("", value):
        # Nested or malformed: Compose would read it differently or refuse it.
        raise InterpolationError(f"{where}: an interpolation this helper cannot read: {value!r}")
    return _REFERENCE.sub(replace, value)


# --- Compose files: YAML with the `!reset` and `!override` tags, and merging -------------------


@dataclass(frozen=True)
class Tagged:
    """A value written `!reset VALUE` or `!override VALUE` in a Compose override file."""

    tag: str  # "reset" or "override"
    value: Any


class ComposeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads Compose's merge tags (Compose 2.24 and newer)."""


def _tagged(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Tagged:
        if isinstance(node, yaml.MappingNode):
            return Tagged(tag, loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return Tagged(tag, loader.construct_sequence(node, deep=True))
        return Tagged(tag, loader.construct_scalar(node) or None)

    return construct


ComposeLoader.add_constructor("!reset", _tagged("reset"))
ComposeLoader.add_constructor("!override", _tagged("override"))


def load_compose(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text(), Loader=ComposeLoader)
    assert isinstance(document, dict)
    return document


# Sequences Compose merges by appending (the rest are replaced by the override's value).
_APPENDED = {"ports", "expose", "volumes", "env_file", "dns", "extra_hosts", "secrets", "configs"}


def merge_compose(base: Any, override: Any, key: str = "") -> Any:
    """`override` merged onto `base` as `docker compose -f base -f override` does, for what
    these files use: mappings key by key, `!reset`/`!override` replacing, lists of the keys
    in _APPENDED appended, other lists and scalars replaced."""
    if isinstance(override, Tagged):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = (
                merge_compose(base[name], value, name)
                if name in base
                else (value.value if isinstance(value, Tagged) else value)
            )
        return merged
    if isinstance(base, list) and isinstance(override, list) and key in _APPENDED:
        return base + [item for item in override if item not in base]
    return override


# --- ganserve commands ---------------------------------------------------------------------


class CommandError(ValueError):
    """A `ganserve` command line that the CLI refuses."""


def check_ganserve_args(args: Sequence[str]) -> None:
    """Check `ganserve ARGS` against the real CLI without running it.

    The arguments are parsed with `--help` appended, through typer's test runner: an unknown
    command or option fails the parse (exit 2); a known one only prints its help (exit 0).
    Option values are not converted, so a wrong value type is not caught here.
    """
    if not args:
        raise CommandError("an empty ganserve command")
    result = CliRunner().invoke(app, [*args, "--help"])
    if result.exit_code != 0:
        lines = [line.strip("│ ") for line in result.output.splitlines()]
        message = " ".join(line for line in lines if line and not line.startswith(("╭", "╰")))
        raise CommandError(f"ganserve {shlex.join(args)}: {message or result.exception}")


def ganserve_command_lines(markdown: str) -> Iterator[list[str]]:
    """The argument lists of the `ganserve ...` commands in a Markdown file's code.

    Looks in fenced blocks and inline code spans for commands whose program is `ganserve`:
    the first word of a line or of a part after `&&`, `||`, `;` or `|`, after any VAR=value
    assignments. A `#` comment ends a line; `>` ends a command.
    """
    code: list[str] = re.findall(r"```[^\n]*\n(.*?)```", markdown, flags=re.DOTALL)
    outside = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    code += re.findall(r"`([^`\n]+)`", outside)
    for chunk in code:
        for line in chunk.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*", "", line)
            for part in re.split(r"&&|\|\||;|\|", line):
                if not re.match(r"\s*(?:[A-Za-z_]\w*=\S*\s+)*ganserve\s", part):
                    continue
                words = shlex.split(part.split(">")[0])
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
                    words.pop(0)
                if len(words) > 1 and words[0] == "ganserve":
                    yield words[1:]


# --- Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # the rest, continuation lines joined
    line: int  # 1-based line of the keyword


def read_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, `\\` continuations joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are skipped by Docker
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, each list starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result
