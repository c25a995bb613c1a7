/*
 * sgpc-escalate: what an image's own privileged program can do to the identity a Pod gave it.
 *
 * The image holds two copies, both owned by the group the Pod never declared: `sgpc-setgid`
 * (mode 02755: execve(2) makes that group the effective gid) and `sgpc-capsetgid` (the file
 * capability cap_setgid+ep: execve(2) grants CAP_SETGID, and the program calls setgroups(2) to
 * join that group). Each prints what it ended up with and tries to read every file it is given.
 * With no_new_privs, execve ignores both the setgid bit and file capabilities (prctl(2)
 * PR_SET_NO_NEW_PRIVS); without CAP_SETGID in the bounding set the file capability grants
 * nothing (capabilities(7), "Transformation of capabilities during execve()").
 *
 * Output, one line each, for sgpc's probe parser:
 *   sgpc-escalate=NAME egid=GID setgroups=ok|ERROR groups=G1,G2,...
 *   sgpc-escalate-access=NAME PATH allowed|denied [ERROR]
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static gid_t groups[NGROUPS_MAX + 1];

int main(int argc, char **argv) {
    const char *slash = strrchr(argv[0], '/');
    const char *name = slash ? slash + 1 : argv[0];
    struct stat self;
    if (stat("/proc/self/exe", &self) != 0) {
        printf("sgpc-escalate=%s error stat /proc/self/exe: %s\n", name, strerror(errno));
        return 1;
    }
    int count = getgroups(NGROUPS_MAX, groups);
    if (count < 0) {
        printf("sgpc-escalate=%s error getgroups: %s\n", name, strerror(errno));
        return 1;
    }
    groups[count] = self.st_gid;
    const char *joined = setgroups((size_t)count + 1, groups) == 0 ? "ok" : strerror(errno);
    count = getgroups(NGROUPS_MAX, groups);
    if (count < 0) {
        printf("sgpc-escalate=%s error getgroups: %s\n", name, strerror(errno));
        return 1;
    }
    printf("sgpc-escalate=%s egid=%u setgroups=%s groups=", name, (unsigned)getegid(), joined);
    for (int i = 0; i < count; i++) {
        printf(i ? ",%u" : "%u", (unsigned)groups[i]);
    }
    printf("\n");
    for (int i = 1; i < argc; i++) {
        char byte;
        int fd = open(argv[i], O_RDONLY);
        if (fd >= 0 && read(fd, &byte, 1) >= 0) {
            printf("sgpc-escalate-access=%s %s allowed\n", name, argv[i]);
        } else {
            printf("sgpc-escalate-access=%s %s denied %s\n", name, argv[i], strerror(errno));
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    return 0;
}
