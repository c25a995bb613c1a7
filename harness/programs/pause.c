/*
 * sgpc-pause: the only program of sgpc's sandbox ("pause") image, built by the project like
 * Kubernetes' own pause (build/pause/linux/pause.c) instead of taken from a host package. As
 * PID 1 of the sandbox it holds the namespaces, reaps whatever is reparented to it, and exits 0
 * at once on SIGINT or SIGTERM, so that StopPodSandbox never waits out a grace period (PID 1
 * has no default signal actions: without the handlers the kernel would ignore both).
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 || sigaction(SIGCHLD, &on_child, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
