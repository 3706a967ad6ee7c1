"""Local Cloud Assistant (ECS RPC) emulator."""

from local.emulators.ecs.wire import EcsApp

__all__ = ["EcsApp"]
