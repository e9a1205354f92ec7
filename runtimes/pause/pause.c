/*
 * skiff-pause: the first process of a Skiff pod sandbox container.
 *
 * It holds the pod's namespaces open for the pod's other containers, does no work, reaps any
 * zombie that gets re-parented to it, and exits 0 on SIGTERM or SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define SKIFF_PAUSE_VERSION "3.10"

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("skiff-pause " SKIFF_PAUSE_VERSION);
        return 0;
    }
    /* Block the signals we care about and take them only inside sigsuspend, so none can
     * arrive between checking the stop flag and going to sleep. */
    sigset_t wanted, previous;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGINT);
    sigaddset(&wanted, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &wanted, &previous) != 0) {
        perror("skiff-pause: sigprocmask");
        return 1;
    }
    for (;;) {
        int sig = 0;
        if (sigwait(&wanted, &sig) != 0) {
            perror("skiff-pause: sigwait");
            return 1;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            return 0;
        }
        /* SIGCHLD: reap every exited child; several exits can share one signal. */
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
    }
}
