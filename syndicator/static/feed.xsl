<?xml version="1.0" encoding="UTF-8"?>
<!-- Turns our RSS and Atom feeds into a readable page when opened in a browser. Feed readers ignore it. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
  xmlns:atom="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/"
  exclude-result-prefixes="atom media">
  <xsl:output method="html" encoding="UTF-8" indent="yes" doctype-system="about:legacy-compat"/>

  <xsl:template match="/">
    <xsl:variable name="title" select="rss/channel/title | atom:feed/atom:title"/>
    <html lang="en">
      <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title><xsl:value-of select="$title"/> (feed)</title>
        <link rel="stylesheet" href="{substring-before(concat(rss/channel/atom:link[@rel='self']/@href, atom:feed/atom:link[@rel='self']/@href), '/feeds/')}/static/style.css"/>
      </head>
      <body>
        <header class="top">
          <p><strong>This is a web feed.</strong> Copy its address into your feed reader to subscribe:
            <code><xsl:value-of select="rss/channel/atom:link[@rel='self']/@href | atom:feed/atom:link[@rel='self']/@href"/></code></p>
        </header>
        <main id="main">
          <h1><xsl:value-of select="$title"/></h1>
          <p><xsl:value-of select="rss/channel/description | atom:feed/atom:subtitle"/></p>
          <xsl:apply-templates select="rss/channel/item | atom:feed/atom:entry"/>
        </main>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="item">
    <article class="item">
      <xsl:if test="media:thumbnail">
        <img src="{media:thumbnail/@url}" alt="" loading="lazy" referrerpolicy="no-referrer"/>
      </xsl:if>
      <h2><a href="{link}"><xsl:value-of select="title"/></a></h2>
      <p class="meta"><xsl:value-of select="*[local-name()='creator']"/> · <xsl:value-of select="pubDate"/></p>
      <!-- description is HTML-escaped plain text (see feeds.py); unescaping it yields that text, no markup -->
      <p><xsl:value-of select="description" disable-output-escaping="yes"/></p>
    </article>
  </xsl:template>

  <xsl:template match="atom:entry">
    <article class="item">
      <xsl:if test="atom:link[@rel='enclosure']">
        <img src="{atom:link[@rel='enclosure'][1]/@href}" alt="" loading="lazy" referrerpolicy="no-referrer"/>
      </xsl:if>
      <h2><a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a></h2>
      <p class="meta"><xsl:value-of select="atom:author/atom:name"/> · <xsl:value-of select="atom:published"/></p>
      <p><xsl:value-of select="atom:summary"/></p>
    </article>
  </xsl:template>
</xsl:stylesheet>
