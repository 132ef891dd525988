// SPDX-License-Identifier: GPL-2.0
/*
 * Minimal SPLICE_F_STABLE user: splice a file into a pipe as a snapshot,
 * overwrite the file, and show that the pipe still has the old bytes.
 *
 *   cc -I include/uapi -o splice_stable examples/splice_stable.c
 *   ./splice_stable /path/to/dir
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/stable_splice.h>

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	char old[4096], now[4096], got[4096];
	int fd, p[2];
	off64_t off = 0;
	ssize_t n;

	memset(old, 'A', sizeof(old));
	memset(now, 'B', sizeof(now));
	fd = open(dir, O_RDWR | O_TMPFILE, 0600);
	if (fd < 0 || pwrite(fd, old, sizeof(old), 0) != sizeof(old) || pipe(p) < 0) {
		perror("setup");
		return 2;
	}

	n = splice(fd, &off, p[1], NULL, sizeof(old), SPLICE_F_STABLE);
	if (n < 0 && errno == EINVAL) {
		fprintf(stderr, "SPLICE_F_STABLE not supported: is stable_splice loaded?\n");
		return 2;
	}
	if (n != sizeof(old)) {
		perror("splice");
		return 2;
	}

	/* A write after splice() returned must not reach the pipe's reader. */
	if (pwrite(fd, now, sizeof(now), 0) != sizeof(now) ||
	    read(p[0], got, sizeof(got)) != sizeof(got)) {
		perror("pwrite/read");
		return 2;
	}
	if (memcmp(got, old, sizeof(got))) {
		printf("pipe shows the later write: not stable\n");
		return 1;
	}
	printf("pipe holds the snapshot taken at splice()\n");
	return 0;
}
