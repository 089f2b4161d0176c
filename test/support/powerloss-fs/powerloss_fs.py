"""A FUSE file system that forgets what was never synced, for the tests of lastgasp (issue 16).

A SIGKILL keeps the kernel's page cache, so it can never find a missing fsync. This file system keeps two
states of every file and directory: the current one (what programs see, the "page cache") and the durable one
(what a disk would hold after a power cut). A power cut throws the current state away and serves the durable
one, after a remount.

Why this implementation: Debian's fuse3 package (the mount helper) and python3-fusepy (a ctypes binding to
libfuse2, pure Python) install from apt with no build step; npm install scripts are blocked here, so a native
Node binding would not build, and a pure-JS FUSE protocol speaker would be a project of its own. Python's
speed is enough: the agent syncs group-committed batches, and the campaigns use small segments.

What is modelled (everything else is kept, never lost: modes, owners, times):
- File data and size: writes and truncations are pending until an fsync/fdatasync of that file (by any
  handle), which makes the file's whole current content durable. Both calls are treated alike: fdatasync
  must persist the size when it changed, and the agent relies on nothing more.
- Names (create, mkdir, link, rename, unlink, rmdir), in two models:
  * posix (strict): a directory's fsync makes that directory's current list of names durable, as a whole
    (so a rename within one directory is atomic). Nothing else commits a name: a new file whose directory
    was never fsynced is gone after a cut even if the file was fsynced, and a new directory is gone (with
    everything under it) until its parent is fsynced. This is what POSIX promises and what f2fs, btrfs and
    UBIFS give in the worst case. A rename across directories is two separate changes here.
  * ext4 (journal-like): every name change goes into one journal in order, and any fsync, fdatasync or
    directory fsync commits the whole journal (as jbd2 does with one running transaction). File data is
    still durable only through its own file's sync (delayed allocation: another file's commit does not carry
    it). ext4's auto_da_alloc (flushing data on rename-over) is not modelled: this model is harsher.
- A cut (the control command `cut`): the durable state is frozen as the next mount's content, and every
  operation after it, on every open handle and every path, fails with EIO, as a disk that lost power does.
  With `tornProbability` > 0, each write pending at the cut reaches the disk with that probability, in part:
  each 512-byte sector of it independently (a partial write extends the file; its lost sectors read as the
  old bytes, or zeros past the old end). Names are never torn.
- `remount`: unmount and mount the durable state again (a fresh mount: no kernel cache survives).

Control: one JSON command per line on stdin, one JSON answer per line on stdout:
  {"cmd": "cut", "tornProbability": 0.0, "seed": 1}   {"cmd": "remount"}   {"cmd": "stats"}   {"cmd": "exit"}
End of stdin unmounts and exits, so a test runner that dies leaves no mount behind.

Usage: python3 powerloss_fs.py MOUNTPOINT posix|ext4
"""

import errno
import json
import os
import random
import stat
import subprocess
import sys
import threading
import time

from fusepy import FUSE, FuseOSError, Operations

from model import State


class PowerLossFs(Operations):
    """The FUSE operations over a State; path-based (fusepy's high-level API), handles map to inodes."""

    use_ns = True
    # Reads and writes on a file unlinked while open (hard_remove) arrive without a path; the handle is enough.
    flag_nullpath_ok = True

    def __init__(self, state, mutex):
        self.state = state
        self.mutex = mutex
        self.handles = {}
        self.next_fh = 1

    def __call__(self, op, *args):
        with self.mutex:
            return super().__call__(op, *args)

    def inode_of(self, path, fh):
        self.state.check()
        if fh is not None and fh in self.handles:
            return self.handles[fh]
        return self.state.lookup(path)

    def attrs(self, inode):
        now = int(inode.mtime * 1e9)
        size = 4096 if inode.is_dir else len(inode.data)
        return {
            "st_ino": inode.ino, "st_mode": inode.mode, "st_nlink": max(1, inode.links), "st_size": size,
            "st_uid": 0, "st_gid": 0, "st_atime": now, "st_mtime": now, "st_ctime": now,
            "st_blocks": (size + 511) // 512, "st_blksize": 4096,
        }

    def getattr(self, path, fh=None):
        return self.attrs(self.inode_of(path, fh))

    def access(self, path, amode):
        self.state.lookup(path)
        return 0

    def statfs(self, path):
        self.state.check()
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 22, "f_bfree": 1 << 21, "f_bavail": 1 << 21, "f_files": 1 << 20, "f_ffree": 1 << 19, "f_namemax": 255}

    def chmod(self, path, mode):
        inode = self.state.lookup(path)
        inode.mode = (inode.mode & ~0o7777) | (mode & 0o7777)
        return 0

    def chown(self, path, uid, gid):
        self.state.lookup(path)
        return 0

    def utimens(self, path, times=None):
        self.state.lookup(path).mtime = time.time()
        return 0

    def readdir(self, path, fh):
        inode = self.state.lookup(path)
        if not inode.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        return [".", ".."] + sorted(inode.entries)

    def opendir(self, path):
        inode = self.state.lookup(path)
        return self.open_handle(inode)

    def releasedir(self, path, fh):
        return self.release(path, fh)

    def fsyncdir(self, path, datasync, fh):
        inode = self.inode_of(path, fh)
        self.state.stats["dirSyncs"] += 1
        if self.state.model == "ext4":
            self.state.commit_journal()
        else:
            self.state.commit_dir(inode)
        return 0

    def mkdir(self, path, mode):
        parent, name = self.state.parent_of(path)
        if name in parent.entries:
            raise FuseOSError(errno.EEXIST)
        inode = self.state.new_inode(True, stat.S_IFDIR | (mode & 0o7777))
        self.state.set_entry(parent, name, inode.ino)
        return 0

    def rmdir(self, path):
        parent, name = self.state.parent_of(path)
        inode = self.state.lookup(path)
        if not inode.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        if inode.entries:
            raise FuseOSError(errno.ENOTEMPTY)
        self.state.remove_entry(parent, name)
        return 0

    def open_handle(self, inode):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = inode
        inode.handles += 1
        return fh

    def create(self, path, mode, fi=None):
        parent, name = self.state.parent_of(path)
        existing = parent.entries.get(name)
        if existing is not None:
            return self.open_handle(self.state.inodes[existing])
        inode = self.state.new_inode(False, stat.S_IFREG | (mode & 0o7777))
        self.state.set_entry(parent, name, inode.ino)
        return self.open_handle(inode)

    def open(self, path, flags):
        inode = self.state.lookup(path)
        if inode.is_dir:
            raise FuseOSError(errno.EISDIR)
        return self.open_handle(inode)

    def release(self, path, fh):
        inode = self.handles.pop(fh, None)
        if inode is not None:
            inode.handles -= 1
            self.state.collect(inode.ino)
        return 0

    def flush(self, path, fh):
        self.state.check()
        return 0

    def read(self, path, size, offset, fh):
        inode = self.inode_of(path, fh)
        return bytes(inode.data[offset:offset + size])

    def write(self, path, data, offset, fh):
        inode = self.inode_of(path, fh)
        end = offset + len(data)
        if len(inode.data) < end:
            inode.data.extend(bytes(end - len(inode.data)))
        inode.data[offset:end] = data
        inode.pending.append(("w", offset, bytes(data)))
        inode.mtime = time.time()
        self.state.stats["writes"] += 1
        return len(data)

    def truncate(self, path, length, fh=None):
        inode = self.inode_of(path, fh)
        if inode.is_dir:
            raise FuseOSError(errno.EISDIR)
        del inode.data[length:]
        inode.data.extend(bytes(length - len(inode.data)))
        inode.pending.append(("t", length))
        return 0

    def fsync(self, path, datasync, fh):
        self.state.sync_file(self.inode_of(path, fh))
        return 0

    def unlink(self, path):
        parent, name = self.state.parent_of(path)
        if name not in parent.entries:
            raise FuseOSError(errno.ENOENT)
        if self.state.inodes[parent.entries[name]].is_dir:
            raise FuseOSError(errno.EISDIR)
        self.state.remove_entry(parent, name)
        return 0

    def link(self, target, source):
        inode = self.state.lookup(source)
        parent, name = self.state.parent_of(target)
        if name in parent.entries:
            raise FuseOSError(errno.EEXIST)
        if inode.is_dir:
            raise FuseOSError(errno.EPERM)
        self.state.set_entry(parent, name, inode.ino)
        return 0

    def rename(self, old, new):
        source = self.state.lookup(old)
        old_parent, old_name = self.state.parent_of(old)
        new_parent, new_name = self.state.parent_of(new)
        existing = new_parent.entries.get(new_name)
        if existing is not None and self.state.inodes[existing].is_dir and self.state.inodes[existing].entries:
            raise FuseOSError(errno.ENOTEMPTY)
        # Hold the inode while its old name goes, so that it is not collected in between.
        source.handles += 1
        self.state.remove_entry(old_parent, old_name)
        self.state.set_entry(new_parent, new_name, source.ino)
        source.handles -= 1
        return 0


class Controller:
    """Mounts, serves control commands from stdin, and remounts the durable image after a cut."""

    def __init__(self, mountpoint, model):
        self.mountpoint = mountpoint
        self.model = model
        self.mutex = threading.Lock()
        self.state = State(model)
        self.pending_image = None
        self.exiting = False
        self.mounted = threading.Event()
        # Counts mounts, so that a remount waits for a newer one than the mount it took down.
        self.generation = 0

    def serve_mounts(self):
        while not self.exiting:
            ops = PowerLossFs(self.state, self.mutex)
            threading.Thread(target=self.wait_mounted, daemon=True).start()
            FUSE(ops, self.mountpoint, foreground=True, nothreads=True, use_ino=True, hard_remove=True, big_writes=True,
                 max_write=131072, entry_timeout=0, attr_timeout=0, negative_timeout=0, fsname="powerloss-" + self.model)
            self.mounted.clear()
            if self.pending_image is not None:
                with self.mutex:
                    self.state = State(self.model, self.pending_image)
                    self.pending_image = None

    def wait_mounted(self):
        while not os.path.ismount(self.mountpoint):
            time.sleep(0.01)
        self.generation += 1
        self.mounted.set()

    def unmount(self):
        if subprocess.run(["umount", self.mountpoint], stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["umount", "-l", self.mountpoint], stderr=subprocess.DEVNULL)

    def command(self, message):
        cmd = message.get("cmd")
        if cmd == "cut":
            with self.mutex:
                rng = random.Random(message.get("seed", 0))
                self.pending_image = self.state.image(float(message.get("tornProbability", 0.0)), rng)
                self.state.dead = True
                return {"ok": True, "stats": self.state.stats}
        if cmd == "remount":
            if self.pending_image is None:
                with self.mutex:
                    self.pending_image = self.state.image()
            before = self.generation
            self.unmount()
            deadline = time.monotonic() + 20
            while self.generation == before:
                if time.monotonic() > deadline:
                    return {"ok": False, "error": "the file system did not mount again within 20 s (a process still holds a file or directory open on it?)"}
                time.sleep(0.01)
            return {"ok": True}
        if cmd == "stats":
            with self.mutex:
                return {"ok": True, "stats": self.state.stats, "inodes": len(self.state.inodes)}
        if cmd == "exit":
            # Unmounted by serve_control once this answer is out: the process ends with the mount.
            self.exiting = True
            return {"ok": True}
        return {"ok": False, "error": "unknown command %r" % cmd}

    def serve_control(self):
        if not self.mounted.wait(20):
            print(json.dumps({"ok": False, "error": "mount failed"}), flush=True)
        else:
            print(json.dumps({"ok": True, "mounted": self.mountpoint}), flush=True)
        for line in sys.stdin:
            try:
                answer = self.command(json.loads(line))
            except Exception as error:  # a bad command is answered, never fatal
                answer = {"ok": False, "error": repr(error)}
            print(json.dumps(answer), flush=True)
            if self.exiting:
                break
        self.exiting = True
        self.unmount()


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("posix", "ext4"):
        print("usage: powerloss_fs.py MOUNTPOINT posix|ext4", file=sys.stderr)
        sys.exit(2)
    controller = Controller(sys.argv[1], sys.argv[2])
    threading.Thread(target=controller.serve_control, daemon=True).start()
    controller.serve_mounts()


if __name__ == "__main__":
    main()
