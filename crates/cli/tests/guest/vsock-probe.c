/* Guest side of the vsock check in host_emu_devices.rs (busybox has no AF_VSOCK):
 *   vsock-probe listen PORT        accept one connection, read a line, answer "pong:<line>",
 *                                  print "CHECK vsock-in=<line>"
 *   vsock-probe connect PORT MSG   connect to the host (CID 2), send MSG and a newline, read
 *                                  one line back, print "CHECK vsock-out=<line>"
 * Built static by the test with the host's C compiler. */
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0 || c == '\n') break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return (int)n;
}

static int fail(const char *what) {
    perror(what);
    printf("CHECK vsock-error=%s\n", what);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) return fail("usage");
    struct sockaddr_vm addr;
    memset(&addr, 0, sizeof addr);
    addr.svm_family = AF_VSOCK;
    addr.svm_port = (unsigned)atoi(argv[2]);
    char line[256];
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (s < 0) return fail("socket");
    if (strcmp(argv[1], "listen") == 0) {
        addr.svm_cid = VMADDR_CID_ANY;
        if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) return fail("bind");
        if (listen(s, 1) < 0) return fail("listen");
        printf("CHECK vsock-listening=%s\n", argv[2]);
        fflush(stdout);
        int c = accept(s, NULL, NULL);
        if (c < 0) return fail("accept");
        read_line(c, line, sizeof line);
        dprintf(c, "pong:%s\n", line);
        close(c);
        printf("CHECK vsock-in=%s\n", line);
    } else if (strcmp(argv[1], "connect") == 0 && argc > 3) {
        addr.svm_cid = VMADDR_CID_HOST;
        if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) return fail("connect");
        dprintf(s, "%s\n", argv[3]);
        read_line(s, line, sizeof line);
        printf("CHECK vsock-out=%s\n", line);
    } else {
        return fail("usage");
    }
    close(s);
    return 0;
}
