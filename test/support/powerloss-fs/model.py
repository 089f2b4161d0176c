"""The power-loss file system's model: current and durable state per inode, and what a cut leaves.

Kept apart from the FUSE operations (powerloss_fs.py, whose docstring describes the model) so that each
reads in one sitting.
"""

import errno
import stat
import time

from fusepy import FuseOSError

SECTOR_BYTES = 512


class Inode:
    __slots__ = ("ino", "is_dir", "mode", "data", "durable", "pending", "entries", "durable_entries", "links", "durable_links", "handles", "mtime")

    def __init__(self, ino, is_dir, mode):
        self.ino = ino
        self.is_dir = is_dir
        self.mode = mode
        self.data = bytearray()
        self.durable = bytearray()
        # Data operations since the last sync, oldest first: ("w", offset, bytes) or ("t", size); for torn cuts.
        self.pending = []
        self.entries = {}
        self.durable_entries = {}
        # How many current and durable directory entries name this inode; with open handles, it lives while any is > 0.
        self.links = 0
        self.durable_links = 0
        self.handles = 0
        self.mtime = time.time()


def apply_ops(content, ops):
    """Replay writes and truncations on a bytearray, as the disk would once they are synced."""
    for op in ops:
        if op[0] == "t":
            del content[op[1]:]
            content.extend(bytes(op[1] - len(content)))
            continue
        _, offset, data = op
        end = offset + len(data)
        if len(content) < end:
            content.extend(bytes(end - len(content)))
        content[offset:end] = data


class State:
    """The file system's content: current and durable, per inode. Built fresh from a durable image at each mount."""

    def __init__(self, model, image=None):
        self.model = model
        self.inodes = {}
        self.next_ino = 2
        self.dead = False
        self.stats = {"writes": 0, "fsyncs": 0, "dirSyncs": 0, "journalCommits": 0}
        if image is None:
            root = Inode(1, True, stat.S_IFDIR | 0o755)
            root.links = root.durable_links = 1
            self.inodes[1] = root
        else:
            self.load(image)

    # ---- images: what survives a cut --------------------------------------------------------------------

    def image(self, torn_probability=0.0, rng=None):
        """The durable state reachable from the root, as {ino: (is_dir, mode, bytes or {name: ino})}."""
        out = {}
        stack = [1]
        while stack:
            ino = stack.pop()
            if ino in out:
                continue
            inode = self.inodes[ino]
            if inode.is_dir:
                out[ino] = (True, inode.mode, dict(inode.durable_entries))
                stack.extend(inode.durable_entries.values())
            else:
                out[ino] = (False, inode.mode, self.torn(inode, torn_probability, rng) if torn_probability > 0 else bytes(inode.durable))
        return out

    @staticmethod
    def torn(inode, probability, rng):
        content = inode.durable[:]
        for op in inode.pending:
            if rng.random() >= probability:
                continue
            if op[0] == "t":
                del content[op[1]:]
                content.extend(bytes(max(0, op[1] - len(content))))
                continue
            _, offset, data = op
            for start in range(0, len(data), SECTOR_BYTES):
                if rng.random() >= 0.5:
                    continue
                end = min(len(data), start + SECTOR_BYTES)
                if len(content) < offset + end:
                    content.extend(bytes(offset + end - len(content)))
                content[offset + start:offset + end] = data[start:end]
        return bytes(content)

    def load(self, image):
        for ino, (is_dir, mode, content) in image.items():
            inode = Inode(ino, is_dir, mode)
            if is_dir:
                inode.entries = dict(content)
                inode.durable_entries = dict(content)
            else:
                inode.data = bytearray(content)
                inode.durable = bytearray(content)
            self.inodes[ino] = inode
            self.next_ino = max(self.next_ino, ino + 1)
        self.inodes[1].links = self.inodes[1].durable_links = 1
        for inode in list(self.inodes.values()):
            for child in inode.entries.values():
                self.inodes[child].links += 1
                self.inodes[child].durable_links += 1

    # ---- names ------------------------------------------------------------------------------------------

    def check(self):
        if self.dead:
            raise FuseOSError(errno.EIO)

    def lookup(self, path):
        self.check()
        inode = self.inodes[1]
        for part in path.split("/"):
            if part == "":
                continue
            if not inode.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            child = inode.entries.get(part)
            if child is None:
                raise FuseOSError(errno.ENOENT)
            inode = self.inodes[child]
        return inode

    def parent_of(self, path):
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self.lookup(head)
        if not parent.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        return parent, name

    def new_inode(self, is_dir, mode):
        inode = Inode(self.next_ino, is_dir, mode)
        self.next_ino += 1
        self.inodes[inode.ino] = inode
        return inode

    def set_entry(self, parent, name, ino):
        old = parent.entries.get(name)
        if old == ino:
            return
        parent.entries[name] = ino
        self.inodes[ino].links += 1
        if old is not None:
            self.inodes[old].links -= 1
            self.collect(old)

    def remove_entry(self, parent, name):
        ino = parent.entries.pop(name)
        self.inodes[ino].links -= 1
        self.collect(ino)

    def commit_dir(self, inode):
        """Make a directory's current names durable."""
        before = set(inode.durable_entries.values())
        for child in inode.durable_entries.values():
            self.inodes[child].durable_links -= 1
        inode.durable_entries = dict(inode.entries)
        for child in inode.durable_entries.values():
            self.inodes[child].durable_links += 1
        for child in before:
            self.collect(child)

    def commit_journal(self):
        self.stats["journalCommits"] += 1
        for inode in [inode for inode in self.inodes.values() if inode.is_dir and inode.entries != inode.durable_entries]:
            if inode.ino in self.inodes:
                self.commit_dir(inode)

    def collect(self, ino):
        """Forget an inode that no name, current or durable, and no handle holds any more."""
        inode = self.inodes.get(ino)
        if inode is None or ino == 1 or inode.links > 0 or inode.durable_links > 0 or inode.handles > 0:
            return
        del self.inodes[ino]
        for child in inode.durable_entries.values():
            self.inodes[child].durable_links -= 1
            self.collect(child)

    # ---- data -------------------------------------------------------------------------------------------

    def sync_file(self, inode):
        self.stats["fsyncs"] += 1
        # Replaying the pending operations costs what was written since the last sync, not the file's size
        # (a 64 MiB segment synced after every 256-byte batch).
        apply_ops(inode.durable, inode.pending)
        inode.pending = []
        if self.model == "ext4":
            self.commit_journal()
