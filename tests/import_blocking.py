"""Python code that makes importing SB3, sb3-contrib or gymnasium fail: prepended to a subprocess's script."""

BLOCK_SB3 = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('stable_baselines3', 'sb3_contrib', 'gymnasium'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block())
"""
