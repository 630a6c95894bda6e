"""Build hook: generate the Protobuf and gRPC stubs from ``proto/`` into the package.

The generated modules (``mpc/v1/*_pb2*.py``) are never committed or edited by
hand; they are produced here on every build, editable installs included, by the
grpcio-tools version pinned in ``pyproject.toml``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def generate_stubs() -> None:
    import grpc_tools
    from grpc_tools import protoc

    proto_root = ROOT / "proto"
    files = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    if not files:
        return
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed to generate the stubs from proto/")
    for pkg in {Path(f).parent for f in files}:
        for d in [pkg, *pkg.parents][:-1]:
            init = ROOT / d / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated from proto/ at build time; do not edit."""\n')


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
