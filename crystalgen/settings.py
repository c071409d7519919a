"""One settings object for every command, job and worker.

Values come, highest priority first, from ``CRYSTALGEN_*`` environment variables, then the YAML
file named by ``CRYSTALGEN_CONFIG`` (default ``~/.crystalgen.yaml``), then the defaults below.
Clusters usually set ``mongodb_uri`` once in the YAML file; laptops and CI leave it empty and get
the embedded database server.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG_FILE = Path("~/.crystalgen.yaml")


def config_file() -> Path:
    return Path(os.environ.get("CRYSTALGEN_CONFIG", str(DEFAULT_CONFIG_FILE))).expanduser()


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the optional user YAML file; a malformed file is an error, a missing one is not."""

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the ABC
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file()
        if not path.is_file():
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"settings file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"settings file {path} must hold a mapping of setting: value")
        return data


class Settings(BaseSettings):
    """Where the database lives, where files go, which external programs and potential to use."""

    model_config = SettingsConfigDict(env_prefix="CRYSTALGEN_", extra="forbid")

    mongodb_uri: str | None = Field(
        default=None,
        description="MongoDB URI (mongod, Atlas, ...). Empty: run the embedded SecantusDB server.",
    )
    database: str = Field(default="crystalgen", description="Database name for all collections.")
    data_dir: Path = Field(
        default=Path("~/.crystalgen"),
        description="Embedded database storage, server state file, caches and run directories.",
    )
    db_port: int | None = Field(
        default=None, ge=1, le=65535, description="Port for the embedded server; empty picks a free one."
    )
    vasp_cmd: str | None = Field(
        default=None, description="VASP command (e.g. 'srun vasp_std'). Empty: no DFT on this machine."
    )
    potential: str | None = Field(
        default=None,
        description="Machine-learned potential: a known name or a model directory. Empty: the shipped default.",
    )
    potential_device: str = Field(
        default="auto", description="Where potentials run: auto (a visible CUDA GPU, else the CPU), cpu, cuda or cuda:N."
    )
    matgl_models: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders that hold matgl models by name (<folder>/<name>/model.json); "
        "in the environment a list separated by os.pathsep (':' on Linux).",
    )
    cache_dir: Path = Field(
        default=Path("~/.cache/crystalgen"), description="Per-user caches, e.g. passed potential sanity checks."
    )
    torch_threads: int = Field(default=1, ge=1, description="torch threads of each dataset-build worker process.")

    @field_validator("potential_device", "cache_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[info.field_name].default if value == "" else value

    @field_validator("matgl_models", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        return [part for part in value.split(os.pathsep) if part] if isinstance(value, str) else value

    @field_validator("data_dir", "cache_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("matgl_models")
    @classmethod
    def _expand_all(cls, value: list[Path]) -> list[Path]:
        return [path.expanduser() for path in value]

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings, env_settings, _YamlFileSource(settings_cls))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing env)."""
    return Settings()
