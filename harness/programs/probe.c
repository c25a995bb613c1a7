/*
 * sgpc-probe: the program of every crafted image, built by the project (build.rs) instead of a
 * host's busybox. It prints, for sgpc's parser (observation.rs), what the process got:
 *
 *   sgpc-case=$SGPC_CASE
 *   sgpc-id=uid=U(name) gid=G(name) groups=G1(name),...   the calls `id` makes: getuid(2),
 *       getgid(2), geteuid(2), getegid(2), getgroups(2); names from the image's /etc/passwd and
 *       /etc/group, read as files (no NSS: a static program must not load the host's libraries)
 *   sgpc-uidmap=INSIDE OUTSIDE LENGTH                     first line of /proc/self/uid_map
 *   sgpc-status-Uid:... (and Gid, Groups, NoNewPrivs, CapPrm, CapEff, CapBnd of /proc/self/status)
 *   sgpc-access=PATH allowed | PATH denied ERROR          each path of $SGPC_PROBE_FILES, read whole
 *   (each escalation program the image holds, run with the same paths; it prints its own lines,
 *    or sgpc-escalate=NAME not-executed STATUS when it did not run or failed)
 *   sgpc-end
 *
 * Usage: sgpc-probe            probe once (an exec'd process)
 *        sgpc-probe wait       probe, then wait as PID 1: reap children, exit 0 on SIGTERM/SIGINT
 *        sgpc-probe stop       send SIGTERM to PID 1 (ends a Pod's init container)
 *        sgpc-probe prepare DIR FILE TEXT GID FILE_MODE DIR_MODE
 *                              write TEXT to DIR/FILE, chown both to 0:GID, chmod them (octal)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Must match crate::escalation::Program::path. */
static const char *const ESCALATION_PROGRAMS[] = {"/bin/sgpc-setgid", "/bin/sgpc-capsetgid"};
static const char *const STATUS_KEYS[] = {"Uid:", "Gid:", "Groups:", "NoNewPrivs:", "CapPrm:", "CapEff:", "CapBnd:"};
static gid_t groups[NGROUPS_MAX];

/* The name of `id` in a passwd (field 3 = uid) or group (field 3 = gid) file, or NULL. Lines
 * are read whole: a long member list must not split into lines of their own. */
static const char *name_of(const char *file, unsigned id) {
    static char name[256];
    FILE *f = fopen(file, "r");
    if (!f) {
        return NULL;
    }
    const char *found = NULL;
    char *text = NULL;
    size_t size = 0;
    while (!found && getline(&text, &size, f) > 0) {
        char *first = strchr(text, ':');
        char *second = first ? strchr(first + 1, ':') : NULL;
        if (!second || (size_t)(first - text) >= sizeof name) {
            continue;
        }
        char *end;
        errno = 0;
        unsigned long value = strtoul(second + 1, &end, 10);
        if (errno == 0 && end != second + 1 && *end == ':' && value == id) {
            memcpy(name, text, (size_t)(first - text));
            name[first - text] = '\0';
            found = name;
        }
    }
    free(text);
    fclose(f);
    return found;
}

static void print_id(const char *prefix, const char *key, unsigned id, const char *file) {
    const char *name = name_of(file, id);
    printf("%s%s%u", prefix, key, id);
    if (name) {
        printf("(%s)", name);
    }
}

static void probe_id(void) {
    uid_t uid = getuid(), euid = geteuid();
    gid_t gid = getgid(), egid = getegid();
    fputs("sgpc-id=", stdout);
    print_id("", "uid=", uid, "/etc/passwd");
    print_id(" ", "gid=", gid, "/etc/group");
    if (euid != uid) {
        print_id(" ", "euid=", euid, "/etc/passwd");
    }
    if (egid != gid) {
        print_id(" ", "egid=", egid, "/etc/group");
    }
    int count = getgroups(NGROUPS_MAX, groups);
    for (int i = 0; i < count; i++) {
        print_id(i ? "," : " ", i ? "" : "groups=", groups[i], "/etc/group");
    }
    putchar('\n');
}

static void probe_uid_map(void) {
    unsigned inside, outside, length;
    FILE *f = fopen("/proc/self/uid_map", "r");
    if (f && fscanf(f, "%u %u %u", &inside, &outside, &length) == 3) {
        printf("sgpc-uidmap=%u %u %u\n", inside, outside, length);
    } else {
        puts("sgpc-uidmap=");
    }
    if (f) {
        fclose(f);
    }
}

/* Whole lines, however long: a Groups: line of hundreds of groups must not be cut. */
static void probe_status(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char *text = NULL;
    size_t size = 0;
    while (f && getline(&text, &size, f) > 0) {
        for (size_t i = 0; i < sizeof STATUS_KEYS / sizeof *STATUS_KEYS; i++) {
            if (strncmp(text, STATUS_KEYS[i], strlen(STATUS_KEYS[i])) == 0) {
                printf("sgpc-status-%s", text);
            }
        }
    }
    free(text);
    if (f) {
        fclose(f);
    }
}

/* As busybox `[ -x ]` decides for root and the owner alike here: a regular file with an
 * execute bit. (faccessat2, which glibc uses for AT_EACCESS, may be refused by seccomp.) */
static int executable(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
}

/* Reads a file to its end, as `cat` would; NULL, or the failed call and its error. */
static const char *read_whole(const char *path) {
    static char error[128];
    char buffer[4096];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(error, sizeof error, "open: %s", strerror(errno));
        return error;
    }
    ssize_t got;
    while ((got = read(fd, buffer, sizeof buffer)) > 0) {
    }
    if (got < 0) {
        snprintf(error, sizeof error, "read: %s", strerror(errno));
    }
    close(fd);
    return got < 0 ? error : NULL;
}

/* Runs `program files...` with stderr discarded; its exit status as a shell gives it ($?). */
static int run(const char *program, char **files) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 2);
        }
        files[0] = (char *)program;
        execv(program, files);
        _exit(errno == ENOENT ? 127 : 126);
    }
    int status;
    if (child < 0 || waitpid(child, &status, 0) < 0) {
        return 126;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void probe(void) {
    const char *case_name = getenv("SGPC_CASE");
    printf("sgpc-case=%s\n", case_name ? case_name : "");
    probe_id();
    probe_uid_map();
    probe_status();
    /* The paths, split on blanks; files[0] is left for a program's name (run), and a NULL
     * ends the list (at most one path per two bytes of the list, plus both). */
    const char *given = getenv("SGPC_PROBE_FILES");
    char *list = strdup(given ? given : "");
    char **files = calloc(strlen(list) / 2 + 3, sizeof *files);
    if (!list || !files) {
        puts("sgpc-error=out of memory");
        return;
    }
    int count = 1;
    for (char *path = strtok(list, " \t\n"); path; path = strtok(NULL, " \t\n")) {
        files[count++] = path;
    }
    for (int i = 1; i < count; i++) {
        const char *error = read_whole(files[i]);
        if (error) {
            printf("sgpc-access=%s denied %s\n", files[i], error);
        } else {
            printf("sgpc-access=%s allowed\n", files[i]);
        }
    }
    for (size_t i = 0; i < sizeof ESCALATION_PROGRAMS / sizeof *ESCALATION_PROGRAMS; i++) {
        const char *program = ESCALATION_PROGRAMS[i];
        if (executable(program)) {
            int status = run(program, files);
            if (status != 0) {
                printf("sgpc-escalate=%s not-executed %d\n", strrchr(program, '/') + 1, status);
            }
        }
    }
    puts("sgpc-end");
    fflush(stdout);
    free(files);
    free(list);
}

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

/* PID 1 has no default signal actions: without the handlers SIGTERM would be ignored. They
 * are installed before the probe runs, so that a SIGTERM during it is not lost; the reaper
 * only after, so that it cannot take the escalation programs' statuses from run(). */
static int probe_then_wait(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0) {
        return 1;
    }
    probe();
    if (sigaction(SIGCHLD, &on_child, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}

static int prepare(char **args) {
    const char *dir = args[0], *file = args[1], *text = args[2];
    gid_t gid = (gid_t)strtoul(args[3], NULL, 10);
    mode_t file_mode = (mode_t)strtoul(args[4], NULL, 8), dir_mode = (mode_t)strtoul(args[5], NULL, 8);
    FILE *f = chdir(dir) == 0 ? fopen(file, "w") : NULL;
    if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0 || chown(file, 0, gid) != 0 || chown(".", 0, gid) != 0 ||
        chmod(file, file_mode) != 0 || chmod(".", dir_mode) != 0) {
        fprintf(stderr, "sgpc-probe prepare %s/%s: %s\n", dir, file, strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 1) {
        probe();
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "wait") == 0) {
        return probe_then_wait();
    }
    if (argc == 2 && strcmp(argv[1], "stop") == 0) {
        return kill(1, SIGTERM) == 0 ? 0 : 1;
    }
    if (argc == 8 && strcmp(argv[1], "prepare") == 0) {
        return prepare(argv + 2);
    }
    fprintf(stderr, "usage: sgpc-probe [wait | stop | prepare DIR FILE TEXT GID FILE_MODE DIR_MODE]\n");
    return 2;
}
