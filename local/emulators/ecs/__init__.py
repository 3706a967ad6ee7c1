"""Local Cloud Assistant (ECS RPC) emulator."""

from local.emulators.ecs.app import EcsApp

__all__ = ["EcsApp"]
