import Glibc
import Hypervisor

/// Keeps two VMs from writing one disk image: an open file description lock on the whole file,
/// exclusive for a read-write disk and shared for a read-only one, held for as long as the
/// descriptor is open (closing it releases the lock). The same locks QEMU takes, so hvctl and
/// QEMU also keep out of each other's images.
enum DiskImageLock {
    /// Linux's F_OFD_SETLK (fcntl.h, _GNU_SOURCE, which Swift's Glibc module does not define).
    static let setLock: Int32 = 37

    /// Locks the file open at `fd`; throws naming `path` and, when it can be found, the process
    /// holding the conflicting lock.
    static func acquire(fd: Int32, path: String, readOnly: Bool) throws {
        var request = flock()
        request.l_type = Int16(readOnly ? F_RDLCK : F_WRLCK)
        request.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, setLock, &request) != 0 else { return }
        let error = errno
        guard error == EAGAIN || error == EACCES else {
            throw ConfigurationError(.diskPath, value: path, "cannot lock it: \(String(cString: strerror(error)))")
        }
        let holder = holderDescription(of: fd)
        let wanted = readOnly ? "for reading" : "for writing"
        throw ConfigurationError(.diskPath, value: path, "in use \(holder): cannot lock it \(wanted)")
    }

    /// "by process N" for a process with a descriptor of the same inode that holds a lock (Linux
    /// lists each open file's locks in /proc/PID/fdinfo), else "by another process". Runs only
    /// after a refused lock, so a walk over /proc is affordable.
    static func holderDescription(of fd: Int32) -> String {
        var own = stat()
        guard fstat(fd, &own) == 0 else { return "by another process" }
        for pid in names(in: "/proc").compactMap(Int32.init) {
            let descriptors = names(in: "/proc/\(pid)/fd").compactMap(Int32.init)
            for descriptor in descriptors where pid != getpid() || descriptor != fd {
                var info = stat()
                guard stat("/proc/\(pid)/fd/\(descriptor)", &info) == 0, info.st_dev == own.st_dev,
                    info.st_ino == own.st_ino, holdsLock("/proc/\(pid)/fdinfo/\(descriptor)")
                else { continue }
                return pid == getpid() ? "by this process (another disk of it)" : "by process \(pid)"
            }
        }
        return "by another process"
    }

    private static func names(in directory: String) -> [String] {
        guard let stream = opendir(directory) else { return [] }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { $0.prefix { $0 != 0 } }
            names.append(String(decoding: name, as: UTF8.self))
        }
        return names
    }

    /// Whether an fdinfo file lists a lock ("lock:" lines follow "pos:", "flags:" and the rest).
    private static func holdsLock(_ fdinfo: String) -> Bool {
        let file = open(fdinfo, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { return false }
        defer { close(file) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = read(file, &bytes, bytes.count)
        return count > 0 && String(decoding: bytes.prefix(count), as: UTF8.self).contains("\nlock:")
    }
}
