/* The native `doze` binary. */
#include "commands.h"

int main(int argc, char **argv) { return doze_cli_main(argc, argv); }
