/* The native `doze` binary. */
#include <signal.h>
#include <stdio.h>

#include "commands.h"

int main(int argc, char **argv) {
    /* past a file size limit a write fails (EFBIG) instead of killing the
     * process, so the command reports it and deletes its incomplete output */
    signal(SIGXFSZ, SIG_IGN);
    int rc = doze_cli_main(argc, argv);
    /* stdout is buffered: a write that failed (a full disk, a closed pipe's
     * reader gone) shows only here, and must not end as a success */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "doze: writing to stdout failed\n");
        if (rc == 0) rc = 1;
    }
    return rc;
}
